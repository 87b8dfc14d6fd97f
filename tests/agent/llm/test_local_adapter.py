"""The in-process backend applies a peft LoRA adapter (tiny random model, real peft)."""

import numpy as np

from agent.llm.local import LocalBackend
from tests.tiny_lm import tiny_model_and_tokenizer

MESSAGES = [{"role": "user", "content": "which letter ? A . action B . comedy C . drama"}]


def test_an_adapter_changes_the_label_scores_and_the_name(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model_and_tokenizer(seed=0)
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(tmp_path / "rand8"))

    base_model, _ = tiny_model_and_tokenizer(seed=0)
    base = LocalBackend(model=base_model, tokenizer=tok)
    fresh, _ = tiny_model_and_tokenizer(seed=0)
    with_adapter = LocalBackend(model=fresh, tokenizer=tok, adapter_path=str(tmp_path / "rand8"))
    a = np.array(base.label_logprobs(MESSAGES, ["A", "B", "C"]))
    b = np.array(with_adapter.label_logprobs(MESSAGES, ["A", "B", "C"]))
    assert np.abs(a - b).max() > 1e-3
    assert with_adapter.name.endswith("+rand8")
    # The adapter is merged: no peft wrapper is left on the forward path.
    assert type(with_adapter.model).__name__ == "LlamaForCausalLM"
