"""Settings and wiring for a model server (TAILOR_LLM_URL) and adapters."""

import pytest

from agent.build import adapter_location, make_backend
from agent.errors import AssetError, ConfigError
from agent.llm.openai_backend import OpenAIBackend
from agent.settings import Settings

URL = "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize("env,match", [
    ({"TAILOR_LLM_URL": URL}, "needs TAILOR_LLM_MODEL"),
    ({"TAILOR_LLM_URL": "127.0.0.1:8000", "TAILOR_LLM_MODEL": "m"}, "http"),
    ({"TAILOR_LLM_MODEL": "m"}, "set TAILOR_LLM_URL too"),
    ({"TAILOR_LLM_URL": URL, "TAILOR_LLM_MODEL": "m", "TAILOR_ADAPTER": "a"}, "not both"),
    ({"TAILOR_LLM_URL": URL, "TAILOR_LLM_MODEL": "m", "TAILOR_LLM_TIMEOUT": "0"}, "positive"),
    ({"TAILOR_LLM_TIMEOUT": "soon"}, "not a valid float"),
])
def test_bad_server_settings_are_clear_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)


def test_a_server_url_with_a_model_name_selects_the_openai_backend(tmp_path):
    s = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_LLM_URL": "http://h:9/",
                           "TAILOR_LLM_MODEL": "smol", "TAILOR_LLM_TIMEOUT": "2.5"})
    b = make_backend(s)
    assert isinstance(b, OpenAIBackend)
    assert (b.name, b.base_url, b.timeout) == ("smol", "http://h:9/v1", 2.5)


def test_a_served_adapter_is_asked_for_by_its_own_name(tmp_path):
    s = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_LLM_URL": URL,
                           "TAILOR_ADAPTER": "ml100k-v1"})
    assert make_backend(s).name == "ml100k-v1"  # the server holds it; no local folder needed


def test_the_default_settings_give_a_degraded_answer_within_5_s_from_a_silent_server(
        tmp_path, catalog):
    """A server that accepts connections and never answers: with the default timeout
    the turn still answers, in retrieval order with the notice, in under 5 s."""
    import socket
    import time

    from agent.recommender import DEGRADED_RANKING
    from tests.agent.turn.test_recommender import make

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        s = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_LLM_URL": url,
                               "TAILOR_LLM_MODEL": "smol"})  # TAILOR_LLM_TIMEOUT unset
        start = time.monotonic()
        reply = make(catalog, make_backend(s)).turn("I loved Alien, sci-fi")
        took = time.monotonic() - start
    finally:
        silent.close()
    assert DEGRADED_RANKING in reply.notices and reply.recommendations
    assert 1 < took < 5, took  # it did wait for the server, and gave up in time


def test_an_in_process_adapter_must_exist_under_the_data_home(tmp_path):
    s = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_ADAPTER": "nope"})
    with pytest.raises(AssetError, match="no LoRA adapter named 'nope'"):
        adapter_location(s)
    (tmp_path / "adapters" / "yes").mkdir(parents=True)
    (tmp_path / "adapters" / "yes" / "adapter_config.json").write_text("{}")
    assert adapter_location(s.__class__.from_env({"TAILOR_HOME": str(tmp_path),
                                                  "TAILOR_ADAPTER": "yes"})) == \
        tmp_path / "adapters" / "yes"
