import json

import numpy as np
import pytest
import torch

from finetune.config import load_config
from finetune.data import Example
from finetune.train import (attach_lora, best_weight, fused_positions,
                            ranking_report, score_examples, train)
from tests.tiny_lm import tiny_model_and_tokenizer


def example(answer: int, words: str, n: int = 3) -> Example:
    lines = "\n".join(f"{'ABC'[k]}. {w}" for k, w in enumerate(words.split()[:n]))
    messages = ({"role": "system", "content": "which letter ?"},
                {"role": "user", "content": f"you like action . candidates :\n{lines}\nletter ?"})
    return Example(0, "history", tuple(range(n)), (3.0, 2.0, 1.0)[:n], (1,) * n, answer, messages)


# The answer is always the candidate labelled "action": learnable from the prompt alone.
TRAIN = [example(k, " ".join(np.roll(["action", "comedy", "drama"], k))) for k in range(3)] * 4
VALID = [example(k, " ".join(np.roll(["action", "drama", "comedy"], k))) for k in range(3)]


def tiny_config(**kw):
    base = dict(name="tiny", candidates=3, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                lr=5e-2, warmup_steps=1, batch_size=2, epochs=1, eval_every=6, max_minutes=5,
                fusion_grid=[0.0, 1.0])
    return load_config(None, **{**base, **kw})


def test_lora_training_moves_the_adapter_and_not_the_base(tmp_path):
    model, tok = tiny_model_and_tokenizer()
    config = tiny_config()
    peft_model = attach_lora(model, config)
    before = {k: v.detach().clone() for k, v in peft_model.named_parameters()}
    state = train(peft_model, tok, config, TRAIN, VALID, tmp_path, log=lambda m: None,
                  progress=False)
    after = dict(peft_model.named_parameters())
    lora = [k for k in before if "lora_" in k]
    base = [k for k in before if "lora_" not in k]
    assert lora and base
    assert any(not np.allclose(before[k], after[k].detach()) for k in lora if "lora_B" in k)
    assert all(np.array_equal(before[k], after[k].detach()) for k in base)
    assert state.seen == len(TRAIN) and state.step == len(TRAIN) // 2
    assert [p["examples"] for p in state.curve] == [0, 6, 12]
    assert (tmp_path / "adapter_model.safetensors").exists()
    assert (tmp_path / "checkpoint" / "state.json").exists()


def test_training_learns_a_rule_the_prompt_shows(tmp_path):
    # Too small to learn to read, a 2-layer random model can still learn "the answer is
    # always A" (it starts preferring another letter): a working loss on the answer
    # letter gets there, a wrong letter index (validation reads the real letters'
    # log-probabilities) or a detached loss would not.
    always_a = [example(0, ex.messages[1]["content"].split(":")[1]) for ex in TRAIN]
    model, tok = tiny_model_and_tokenizer()
    config = tiny_config(epochs=5, eval_every=12, lr=0.1)
    state = train(attach_lora(model, config), tok, config, always_a, [example(0, "x y z")],
                  tmp_path, log=lambda m: None, progress=False)
    assert state.curve[0]["val_llm_hr@1"] == 0.0 and state.curve[-1]["val_llm_hr@1"] == 1.0
    assert state.curve[-1]["train_loss"] < state.curve[1]["train_loss"] < np.log(3) + 0.1


def test_saved_adapter_loads_into_the_agent_backend_with_identical_scores(tmp_path):
    from agent.llm.local import LocalBackend

    model, tok = tiny_model_and_tokenizer()
    config = tiny_config(eval_every=12)
    peft_model = attach_lora(model, config)
    train(peft_model, tok, config, TRAIN, VALID, tmp_path, log=lambda m: None, progress=False)
    expected = score_examples(peft_model, tok, VALID)  # the best (= last) checkpoint
    fresh, tok2 = tiny_model_and_tokenizer()
    backend = LocalBackend(model=fresh, tokenizer=tok2, adapter_path=str(tmp_path))
    for ex, want in zip(VALID, expected):
        got = backend.label_logprobs(list(ex.messages), list("ABC"))
        assert got == pytest.approx(want.tolist(), abs=1e-4)


def test_training_resumes_from_its_checkpoint(tmp_path):
    model, tok = tiny_model_and_tokenizer()
    logs = []
    first = train(attach_lora(model, tiny_config(epochs=0.5)), tok, tiny_config(epochs=0.5),
                  TRAIN, VALID, tmp_path, log=logs.append, progress=False)
    assert first.seen == 6
    model2, _ = tiny_model_and_tokenizer()
    second = train(attach_lora(model2, tiny_config()), tok, tiny_config(), TRAIN, VALID,
                   tmp_path, log=logs.append, progress=False)
    assert any("resuming" in m for m in logs)
    assert second.seen == 12 and second.step == 6
    assert [p["examples"] for p in second.curve] == [0, 6, 12]  # continued, not restarted


def test_fusion_weight_zero_is_the_retriever_and_ties_go_to_the_smaller_weight():
    exs = [example(1, "a b c"), example(0, "a b c")]
    llm = [np.array([0.0, 1.0, -1.0]), np.array([0.0, 1.0, -1.0])]
    assert fused_positions(exs[0], llm[0], 0.0) == 1  # retriever order: the answer is second
    assert fused_positions(exs[0], llm[0], float("inf")) == 0
    report = ranking_report(exs, llm, (0.0, 0.5, 8.0))
    assert report["retriever"]["ndcg@10"] == report["fused"]["0.0"]["ndcg@10"]
    assert report["llm"]["hr@1"] == 0.5
    assert best_weight({"fused": {"0.0": {"ndcg@10": 0.5}, "1.0": {"ndcg@10": 0.5}}}) == 0.0
    assert best_weight({"fused": {"0.0": {"ndcg@10": 0.5}, "1.0": {"ndcg@10": 0.6}}}) == 1.0


def test_config_precedence_and_unknown_keys(tmp_path):
    from agent.errors import ConfigError

    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.01\nlora_r: 4\ntarget_modules: [q_proj]\n")
    c = load_config(f, lora_r=2)
    assert (c.lr, c.lora_r, c.target_modules) == (0.01, 2, ("q_proj",))
    assert load_config("cpu-smollm2-135m").name == "smollm2-135m-ml-100k"
    f.write_text("learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match="unknown fine-tuning settings"):
        load_config(f)
    with pytest.raises(ConfigError, match="no fine-tuning config"):
        load_config("nope")
    with pytest.raises(ConfigError, match="quant"):
        load_config(None, quant="8bit")
    assert json.loads(json.dumps(c.to_json()))["lora_r"] == 2


def test_qlora_trains_an_adapter_on_4bit_base_weights(tmp_path):
    """QLoRA: bitsandbytes nf4 base (its CPU backend runs here), fp32 LoRA on top."""
    # Every input width a multiple of the 64-value quantization block: on CPUs with
    # AVX512-BF16, bitsandbytes repacks 4-bit weights and fails on narrower layers.
    model, tok = tiny_model_and_tokenizer(hidden=64)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    from finetune.train import load_base

    config = tiny_config(quant="4bit")
    base, tok4 = load_base(str(tmp_path / "base"), "4bit")
    assert type(base.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    peft_model = attach_lora(base, config)
    before = {k: v.detach().clone() for k, v in peft_model.named_parameters() if "lora_B" in k}
    state = train(peft_model, tok4, config, TRAIN, VALID, tmp_path / "out", log=lambda m: None,
                  progress=False)
    assert state.seen == len(TRAIN)
    assert any(not np.array_equal(before[k], v.detach()) for k, v in peft_model.named_parameters()
               if k in before)


def test_frozen_layer_cache_gives_the_full_forward_and_trains_the_same(tmp_path):
    from finetune.train import FrozenSplit, encode, label_ids, letter_logits

    model, tok = tiny_model_and_tokenizer()
    peft_model = attach_lora(model, tiny_config(lora_layers=1))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # a non-trivial adapter, so the top layer really differs
            torch.nn.init.normal_(p, std=0.5)
    split = FrozenSplit(peft_model, 1)
    ids, letters = encode(tok, TRAIN[0].messages), label_ids(tok, 3)
    full = letter_logits(peft_model, ids, letters)
    cached = split.top_logits(split.bottom(ids), letters)
    assert torch.allclose(full, cached, atol=1e-5)
    # Training through the cache moves the same weights as training without it.
    runs = {}
    for cache in (True, False):
        m, t = tiny_model_and_tokenizer()
        config = tiny_config(lora_layers=1, cache_frozen=cache, eval_every=12)
        pm = attach_lora(m, config)
        state = train(pm, t, config, TRAIN, VALID, tmp_path / str(cache), log=lambda m: None,
                      progress=False)
        runs[cache] = ([p["train_loss"] for p in state.curve[1:]],
                       {k: v.detach().clone() for k, v in pm.named_parameters() if "lora_" in k})
    assert runs[True][0] == pytest.approx(runs[False][0], abs=1e-5)
    for k, v in runs[True][1].items():
        assert torch.allclose(v, runs[False][1][k], atol=1e-5), k
