"""The state adapter's training: the shared-prefix shortcut is exact, LoRA moves only the
adapter, and a tiny model learns a fixed answer."""

import numpy as np
import pytest
import torch

from finetune.config import load_config
from finetune.state_data import StateExample
from finetune.state_train import (PrefixStates, answer_loss, batch_losses, encode_pair,
                                  evaluate, shared_prefix, train_state)
from finetune.train import FrozenSplit, attach_lora
from tests.tiny_lm import tiny_model_and_tokenizer

SYSTEM = "you like the movie which genres ? rank the candidates ."


def example(user: str, answer: str) -> StateExample:
    messages = ({"role": "system", "content": SYSTEM}, {"role": "user", "content": user})
    return StateExample(user, {}, (), messages, answer)


TRAIN = [example(f"a {g} movie", f"( {g} )") for g in ("action", "comedy", "drama", "sci-fi")] * 3
VALID = [example("a comedy movie", "( comedy )"), example("a drama movie", "( drama )")]
# Too small to learn to copy, a 2-layer random model can still learn one fixed form: a
# loss on the right tokens gets there, one shifted by a position or detached would not.
# (Its lm_head is scaled up: at init scale its logits cannot leave ~ln(vocab).)
FIXED = [example(ex.text, "( movie , genres )") for ex in TRAIN]


def tiny_config(**kw):
    base = dict(name="tiny-state", task="state", lora_r=4, lora_alpha=8, lora_dropout=0.0,
                lora_layers=1, lr=5e-2, warmup_steps=1, batch_size=4, epochs=1, eval_every=4,
                max_minutes=5)
    return load_config(None, **{**base, **kw})


def randomised_lora(config):
    model, tok = tiny_model_and_tokenizer()
    peft_model = attach_lora(model, config)
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at zero: make the adapter matter for the check
            torch.nn.init.normal_(p, std=0.5)
    return peft_model.eval(), tok


def test_the_shared_prefix_shortcut_gives_the_same_losses_as_whole_prompts():
    config = tiny_config()
    model, tok = randomised_lora(config)
    encoded = [encode_pair(tok, ex) for ex in TRAIN[:4] + VALID]
    split = FrozenSplit(model, config.lora_layers)
    prefix = shared_prefix(encoded)
    assert 0 < len(prefix) < min(len(e.ids) - e.n_answer for e in encoded)
    bottom = PrefixStates(split, prefix)
    with torch.inference_mode():
        for e in encoded:
            whole = split.bottom(e.ids)
            assert torch.allclose(bottom(e.ids), whole[:, len(prefix):], atol=1e-5)
        fast = batch_losses(split, bottom.hidden, [(bottom(e.ids), e) for e in encoded])
        slow = [answer_loss(model, e) for e in encoded]
    assert [f[0].item() for f in fast] == pytest.approx([s[0].item() for s in slow], abs=1e-5)
    assert [f[1] for f in fast] == [s[1] for s in slow]


def test_gradients_through_the_shortcut_match_whole_prompts():
    config = tiny_config()
    model, tok = randomised_lora(config)
    encoded = [encode_pair(tok, ex) for ex in TRAIN[:3]]
    split = FrozenSplit(model, config.lora_layers)
    bottom = PrefixStates(split, shared_prefix(encoded))
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(losses):
        model.zero_grad()
        torch.stack(losses).sum().backward()
        return [p.grad.clone() for p in params]

    fast = grads([loss for loss, _ in batch_losses(split, bottom.hidden,
                                                   [(bottom(e.ids), e) for e in encoded])])
    slow = grads([answer_loss(model, e)[0] for e in encoded])
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(fast, slow))


def test_training_moves_the_adapter_not_the_base_and_learns_a_fixed_form(tmp_path):
    model, tok = tiny_model_and_tokenizer()
    with torch.no_grad():
        model.lm_head.weight.mul_(50)
    config = tiny_config(epochs=6, eval_every=24, lr=0.05)
    peft_model = attach_lora(model, config)
    before = {k: v.detach().clone() for k, v in peft_model.named_parameters()}
    state = train_state(peft_model, tok, config, FIXED, FIXED[:2], tmp_path, log=lambda m: None,
                        progress=False)
    after = dict(peft_model.named_parameters())
    lora = [k for k in before if "lora_B" in k]
    assert lora and any(not torch.equal(before[k], after[k].detach()) for k in lora)
    assert all(torch.equal(before[k], after[k].detach()) for k in before if "lora_" not in k)
    assert state.seen == 6 * len(TRAIN) and state.step == 6 * len(TRAIN) // 4
    curve = state.curve
    assert curve[0]["examples"] == 0 and curve[0]["val_exact"] == 0.0
    assert curve[-1]["val_loss"] < curve[0]["val_loss"] / 4
    assert state.best == {k: v for k, v in curve[-1].items()}  # the best is the last, saved
    assert (tmp_path / "adapter_model.safetensors").exists()
    assert (tmp_path / "checkpoint" / "state.json").exists()


def test_validation_reports_loss_and_exact_forms():
    config = tiny_config()
    model, tok = randomised_lora(config)
    encoded = [encode_pair(tok, ex) for ex in VALID]
    whole = evaluate(model, encoded)
    split = FrozenSplit(model, config.lora_layers)
    bottom = PrefixStates(split, shared_prefix(encoded))
    fast = evaluate(model, encoded, split, bottom.hidden, [bottom(e.ids) for e in encoded])
    assert whole["n"] == fast["n"] == 2 and whole["exact"] == fast["exact"]
    assert whole["loss"] == pytest.approx(fast["loss"], abs=1e-5) and np.isfinite(whole["loss"])


def test_a_state_config_is_checked():
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="task"):
        load_config(None, task="summarise")
    assert load_config("cpu-state-135m").task == "state"
    assert load_config("cpu-state-135m").data_key() != load_config(
        "cpu-state-135m", state_examples=10).data_key()
