"""LoRA / QLoRA training of the verbalizer ranker: the loss is on the answer letter.

One prompt per forward pass (no padding: on a 2-core CPU batching gave
nothing), gradients accumulated over ``batch_size`` prompts, logits computed
for the last position only. The loss is cross-entropy over the candidates'
letters alone (a listwise softmax): the model learns which candidate, not
that the reply is a letter, which every instruction model already knows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.rank.verbalizer import LABELS, zscore
from finetune.config import FinetuneConfig
from finetune.data import Example, position_ndcg

META_FILE = "tailor.json"  # the adapter's metadata, beside peft's adapter_config.json


def encode(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def label_ids(tokenizer, n: int) -> list[int]:
    ids = [tokenizer.encode(label, add_special_tokens=False) for label in LABELS[:n]]
    if any(len(t) != 1 for t in ids):
        raise ValueError("every candidate letter must be one token for this tokenizer")
    return [t[0] for t in ids]


def as_input(ids: list[int], model):
    import torch

    return torch.tensor([ids], device=model.device)


def letter_logits(model, ids: list[int], letters: list[int]):
    """The next-token logits of the candidate letters after the prompt ``ids``."""
    out = model(input_ids=as_input(ids, model), logits_to_keep=1)
    return out.logits[0, -1, letters].float()


class FrozenSplit:
    """LoRA on the top ``k`` layers only leaves the bottom ones frozen, so each prompt's
    hidden state after them never changes: it is computed once per example
    (``bottom``) and every later pass runs just the top ``k`` layers (``top_logits``).
    With 6 of 30 layers trained, a step costs about a fifth of a full one, which is
    what makes several epochs fit in a CPU budget. Exact: same numbers as a full pass.
    """

    def __init__(self, model, k: int):
        self.causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.inner = self.causal_lm.model  # LlamaModel-like: embed_tokens, layers, norm
        self.layers = self.inner.layers
        self.cut = len(self.layers) - k

    def _with_layers(self, layers, norm, fn):
        import torch

        saved_layers, saved_norm = self.inner.layers, self.inner.norm
        self.inner.layers = torch.nn.ModuleList(layers)
        self.inner.norm = norm
        try:
            return fn()
        finally:
            self.inner.layers, self.inner.norm = saved_layers, saved_norm

    def bottom(self, ids: list[int]):
        """Hidden states after the frozen layers, ``[1, T, d]`` (no graph kept)."""
        import torch

        with torch.inference_mode():
            out = self._with_layers(list(self.layers[: self.cut]), torch.nn.Identity(),
                                    lambda: self.inner(input_ids=as_input(ids, self.causal_lm)))
        return out.last_hidden_state.clone()

    def top_logits(self, hidden, letters: list[int] | None = None):
        """Next-token logits (of ``letters``, or the whole vocabulary) from the cached
        states through the trainable top layers."""
        out = self._with_layers(list(self.layers[self.cut:]), self.inner.norm,
                                lambda: self.causal_lm(inputs_embeds=hidden, logits_to_keep=1))
        row = out.logits[0, -1]
        return (row if letters is None else row[letters]).float()

    def top_sequence_logits(self, hidden, keep: int):
        """Logits of the last ``keep`` positions, ``[keep, vocab]``, through the top layers
        (the state adapter's loss is on every token of its answer)."""
        out = self._with_layers(list(self.layers[self.cut:]), self.inner.norm,
                                lambda: self.causal_lm(inputs_embeds=hidden, logits_to_keep=keep))
        return out.logits[0].float()


def fused_positions(ex: Example, llm: np.ndarray, weight: float) -> int:
    """Where the answer lands when candidates are ordered by ``z(retrieval) + w z(llm)``;
    ``weight = inf`` orders by the LLM alone."""
    score = zscore(llm) if math.isinf(weight) else zscore(np.array(ex.retrieval)) + weight * zscore(llm)
    order = np.argsort(-score, kind="stable")
    return int(np.where(order == ex.answer)[0][0])


def ranking_report(examples: list[Example], llm_scores: list[np.ndarray],
                   grid: tuple[float, ...]) -> dict:
    """NDCG@10 and HR@1 of the retriever's order, the LLM alone, and each fusion weight."""
    def summary(positions):
        return {"ndcg@10": float(np.mean([position_ndcg(p) for p in positions])),
                "hr@1": float(np.mean([p == 0 for p in positions])), "n": len(positions)}

    out = {"retriever": summary([ex.answer for ex in examples]),
           "llm": summary([fused_positions(ex, s, math.inf) for ex, s in zip(examples, llm_scores)])}
    out["fused"] = {str(w): summary([fused_positions(ex, s, w) for ex, s in zip(examples, llm_scores)])
                    for w in grid}
    return out


def best_weight(report: dict) -> float:
    """The fusion weight with the best validation NDCG@10; ties go to the smaller weight
    (w = 0, the retriever alone, is in the grid, so fusion never loses on validation)."""
    fused = report["fused"]
    return float(max(fused, key=lambda w: (fused[w]["ndcg@10"], -float(w))))


def score_examples(model, tokenizer, examples: list[Example], progress: bool = False,
                   desc: str = "scoring", split: FrozenSplit | None = None,
                   states: list | None = None) -> list[np.ndarray]:
    """Letter log-probabilities (full-vocabulary softmax, as the agent reads them);
    from cached frozen-layer ``states`` through ``split`` when given."""
    import torch
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for k, ex in enumerate(tqdm(examples, desc=desc, unit="prompt", disable=not progress,
                                    leave=False)):
            if split is not None:
                logits = split.top_logits(states[k])
            else:
                ids = encode(tokenizer, ex.messages)
                logits = model(input_ids=as_input(ids, model), logits_to_keep=1).logits[0, -1].float()
            lp = torch.log_softmax(logits, -1)
            out.append(lp[label_ids(tokenizer, len(ex.candidates))].cpu().numpy().astype(np.float64))
    model.train(was_training)
    return out


def load_base(model_path: str, quant: str):
    """The base model on the GPU when there is one (bf16 compute), else fp32 on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agent.llm.local import quantization_kwargs

    cuda = torch.cuda.is_available()
    kwargs = quantization_kwargs(quant)
    if cuda and kwargs:
        kwargs["device_map"] = {"": 0}
        if quant == "4bit":
            kwargs["quantization_config"].bnb_4bit_compute_dtype = torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, use_safetensors=True,
                                                 dtype=torch.bfloat16 if cuda else torch.float32,
                                                 **kwargs)
    if cuda and not kwargs:
        model = model.to("cuda")
    return model, tokenizer


def attach_lora(model, config: FinetuneConfig):
    """Wrap ``model`` with a fresh LoRA adapter (only its weights will train)."""
    from peft import LoraConfig, get_peft_model

    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers - config.lora_layers, n_layers)) if config.lora_layers else None
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), layers_to_transform=layers,
                      task_type="CAUSAL_LM")
    if config.quant == "4bit":
        from peft import prepare_model_for_kbit_training

        # No gradient checkpointing: it trades compute for memory, and a small model on
        # a CPU is short of compute, not memory.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, lora)


@dataclass
class TrainState:
    """What a checkpoint must restore to continue exactly where it stopped."""

    seen: int = 0  # examples consumed
    step: int = 0  # optimizer steps
    minutes: float = 0.0
    curve: list[dict] = field(default_factory=list)
    best: dict | None = None  # the curve point of the best adapter so far


def lr_at(step: int, total: int, config: FinetuneConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    frac = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def save_checkpoint(model, optimizer, state: TrainState, folder: Path) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    (folder / "state.json").write_text(json.dumps(state.__dict__, indent=1))


def load_checkpoint(model, optimizer, folder: Path) -> TrainState:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    # weights_only: tensors and plain containers, never arbitrary pickled objects.
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return TrainState(**json.loads((folder / "state.json").read_text()))


def train(model, tokenizer, config: FinetuneConfig, train_set: list[Example],
          val_set: list[Example], out: Path, log=print, progress: bool = True) -> TrainState:
    """Train the LoRA adapter of ``model`` (a peft model) and keep the best one in ``out``.

    Validation NDCG@10 of the LLM alone is measured every ``eval_every`` examples
    (and before the first step); the adapter with the best so far is saved to
    ``out``. A checkpoint in ``out/checkpoint`` resumes an interrupted run.
    """
    import torch
    from tqdm import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    ckpt = out / "checkpoint"
    state = load_checkpoint(model, optimizer, ckpt) if (ckpt / "state.json").exists() else TrainState()
    if state.seen:
        log(f"resuming from {ckpt}: {state.seen} examples seen, {state.minutes:.1f} min")
    total = int(config.epochs * len(train_set))
    total_steps = math.ceil(total / config.batch_size)
    rng = np.random.default_rng(config.seed)
    orders = [rng.permutation(len(train_set)) for _ in range(math.ceil(config.epochs))]
    n = config.candidates
    letters = {k: label_ids(tokenizer, k) for k in range(2, n + 1)}
    split = train_states = val_states = None
    if config.lora_layers and config.cache_frozen:
        split = FrozenSplit(model, config.lora_layers)
        train_states = [split.bottom(encode(tokenizer, ex.messages)) for ex in tqdm(
            train_set, desc="frozen layers (once)", unit="ex", disable=not progress, leave=False)]
        val_states = [split.bottom(encode(tokenizer, ex.messages)) for ex in val_set]
    cached = (split, val_states)
    if not state.curve:
        _validate(model, tokenizer, config, val_set, state, None, out, log, progress, cached)
    model.train()
    started, losses = time.perf_counter() - state.minutes * 60, []
    bar = tqdm(total=total, initial=state.seen, desc="fine-tuning", unit="ex", disable=not progress)
    while state.seen < total:
        idx = orders[state.seen // len(train_set)][state.seen % len(train_set)]
        ex = train_set[idx]
        if split is not None:
            logits = split.top_logits(train_states[idx], letters[len(ex.candidates)])
        else:
            logits = letter_logits(model, encode(tokenizer, ex.messages), letters[len(ex.candidates)])
        loss = torch.nn.functional.cross_entropy(logits[None],
                                                 torch.tensor([ex.answer], device=logits.device))
        (loss / config.batch_size).backward()
        losses.append(loss.item())
        state.seen += 1
        bar.update(1)
        if state.seen % config.batch_size == 0 or state.seen == total:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(state.step, total_steps, config)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-200:]):.3f}")
        state.minutes = (time.perf_counter() - started) / 60
        out_of_time = state.minutes >= config.max_minutes
        if state.seen % config.eval_every == 0 or state.seen == total or out_of_time:
            _validate(model, tokenizer, config, val_set, state, float(np.mean(losses[-config.eval_every:])),
                      out, log, progress, cached)
            save_checkpoint(model, optimizer, state, ckpt)
        if out_of_time:
            log(f"stopped at the {config.max_minutes:g}-minute budget after {state.seen} examples")
            break
    bar.close()
    return state


def _validate(model, tokenizer, config, val_set, state: TrainState, train_loss: float | None,
              out: Path, log, progress: bool, cached=(None, None)) -> None:
    """Append a learning-curve point; save the adapter when it is the best so far."""
    t = time.perf_counter()
    scores = score_examples(model, tokenizer, val_set, progress, "validating", *cached)
    report = ranking_report(val_set, scores, config.fusion_grid)
    point = {"examples": state.seen, "minutes": round(state.minutes, 2), "train_loss": train_loss,
             "val_llm_ndcg@10": report["llm"]["ndcg@10"], "val_llm_hr@1": report["llm"]["hr@1"],
             "val_retriever_ndcg@10": report["retriever"]["ndcg@10"], "validation": report,
             "eval_s": round(time.perf_counter() - t, 1)}
    state.curve.append(point)
    loss = "-" if train_loss is None else f"{train_loss:.3f}"
    log(f"[{state.seen} examples, {state.minutes:.1f} min] train loss {loss}  "
        f"val NDCG@10 LLM {point['val_llm_ndcg@10']:.4f} (retriever "
        f"{point['val_retriever_ndcg@10']:.4f})  HR@1 {point['val_llm_hr@1']:.3f}")
    if state.seen and (state.best is None or point["val_llm_ndcg@10"] > state.best["val_llm_ndcg@10"]):
        state.best = {k: v for k, v in point.items() if k != "validation"}
        state.best["fusion_weight"] = best_weight(report)
        state.best["validation"] = report
        model.save_pretrained(str(out))
