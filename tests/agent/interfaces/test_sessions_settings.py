import pytest

from agent.errors import ConfigError, InputError
from agent.interfaces.sessions import SessionStore
from agent.settings import Settings
from agent.types import DialogueState


def test_session_state_survives_a_new_store(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    sid = store.create("abc")
    state = DialogueState(liked=(1, 2), shown=(5,), year_min=1990)
    store.save_turn(sid, "hi", {"text": "x"}, state)
    again = SessionStore(tmp_path / "s.sqlite3")
    assert again.load("abc") == state
    assert again.turns("abc") == [{"message": "hi", "reply": {"text": "x"}}]
    assert again.load("nope") is None


@pytest.mark.parametrize("bad", ["", "a b", "../etc", "x" * 65, "'; DROP TABLE sessions;--"])
def test_bad_session_ids_are_rejected(tmp_path, bad):
    with pytest.raises(InputError):
        SessionStore(tmp_path / "s.sqlite3").load(bad)


def test_settings_from_env_with_overrides(tmp_path):
    s = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_TOP_K": "5",
                           "TAILOR_LLM_WEIGHT": "0.25", "PATH": "/bin"}, rank_mode="zero")
    assert s.home == tmp_path and s.top_k == 5 and s.llm_weight == 0.25 and s.rank_mode == "zero"
    assert s.data_dir() == tmp_path / "data" / "ml-100k"


@pytest.mark.parametrize("env,match", [
    ({"TAILOR_TOPK": "3"}, "unknown setting TAILOR_TOPK"),
    ({"TAILOR_TOP_K": "three"}, "not a valid int"),
    ({"TAILOR_DATASET": "netflix"}, "dataset must be"),
    ({"TAILOR_TOP_K": "30"}, "top_k"),
    ({"TAILOR_SASREC_EPOCHS": "-1"}, "sasrec_epochs must be 0"),
    ({"TAILOR_SASREC_MAX_LEN": "-5"}, "sasrec_max_len must be 0"),
])
def test_bad_settings_are_clear_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)


def test_chroma_url_unset_is_none():
    assert Settings.from_env({"TAILOR_CHROMA_URL": ""}).chroma_url is None


def test_the_sasrec_epoch_cap_keys_a_model_of_its_own():
    from agent.models.sasrec import SASRecConfig, config_for

    assert config_for(Settings.from_env({})) == SASRecConfig()  # no cap: early stopping
    capped = config_for(Settings.from_env({"TAILOR_SASREC_EPOCHS": "30"}))
    assert capped.max_epochs == 30 and capped != SASRecConfig()


def test_sasrec_reads_200_items_of_long_histories_and_50_of_shorter_ones():
    from types import SimpleNamespace

    import numpy as np

    from agent.models.sasrec import config_for

    def catalog(per_user):
        return SimpleNamespace(user=np.repeat(np.arange(1, 5), per_user))

    plain = Settings.from_env({})
    assert config_for(plain, catalog(106)).max_len == 50  # ML-100K's mean
    assert config_for(plain, catalog(165)).max_len == 200  # ML-1M's
    assert config_for(plain).max_len == 50  # no data: the default
    chosen = Settings.from_env({"TAILOR_SASREC_MAX_LEN": "80"})
    assert config_for(chosen, catalog(165)).max_len == 80
