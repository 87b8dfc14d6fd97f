"""TAILOR_QUANT: the in-process model in 8-bit and 4-bit (bitsandbytes' CPU backend)."""

import numpy as np
import pytest

from agent.errors import BackendError, ConfigError
from agent.llm.local import LocalBackend, quantization_kwargs
from agent.settings import Settings


def test_quant_modes_map_to_bitsandbytes_configs():
    assert quantization_kwargs("none") == {}
    four = quantization_kwargs("4bit")
    assert four["quantization_config"].load_in_4bit and four["device_map"] == "cpu"
    assert four["quantization_config"].bnb_4bit_quant_type == "nf4"
    assert quantization_kwargs("8bit")["quantization_config"].load_in_8bit
    with pytest.raises(BackendError, match="quant must be"):
        quantization_kwargs("2bit")


@pytest.mark.parametrize("env,match", [
    ({"TAILOR_QUANT": "int4"}, "quant must be one of"),
    ({"TAILOR_QUANT": "4bit", "TAILOR_LLM_URL": "http://h:1/v1", "TAILOR_LLM_MODEL": "m"},
     "applies to the in-process model"),
])
def test_bad_quant_settings_are_clear_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)


@pytest.mark.assets
@pytest.mark.slow
def test_quantized_models_load_smaller_and_rank_like_fp32(real_settings):
    from agent.rank.verbalizer import LABELS, build_messages
    from agent.types import DialogueState

    lines = [f"{LABELS[k]}. {t}" for k, t in enumerate(
        ["Heat (1995) | Action, Crime", "Toy Story (1995) | Animation, Comedy",
         "Alien (1979) | Horror, Sci-Fi", "Fargo (1996) | Crime, Drama",
         "Casablanca (1942) | Drama, Romance"])]
    messages = build_messages(DialogueState(query="a crime thriller"), lines, {}, few_shot=False)
    path = str(real_settings.models_dir / "smollm2-135m-instruct")
    fp32 = LocalBackend(path)
    base = np.array(fp32.label_logprobs(messages, LABELS[:5]))
    for quant in ("8bit", "4bit"):
        q = LocalBackend(path, quant=quant)
        assert q.model.get_memory_footprint() < 0.5 * fp32.model.get_memory_footprint()
        scores = np.array(q.label_logprobs(messages, LABELS[:5]))
        assert np.isfinite(scores).all() and not np.allclose(scores, base, atol=1e-4)
        assert np.corrcoef(scores, base)[0, 1] > 0.5, (quant, scores, base)
        # its work is counted in passes and tokens; its FLOPs are not guessed
        assert q.stats()["forward_passes"] >= 1 and q.stats()["flops_counted"] is False
        assert q.packed == 0 and fp32.packed > 0
