"""LoRA training of the state extractor (``tailor finetune --task state``): the loss is
on the tokens of the JSON form.

The ranking adapter's recipe (``finetune.train``): one prompt per forward pass,
gradients accumulated over ``batch_size`` prompts, LoRA on the top ``lora_layers``
with the frozen layers run once per example (``FrozenSplit``), the best adapter
kept by validation, a checkpoint to resume from. What differs: the loss is token
cross-entropy over the whole answer (the form and the end-of-turn token) under
teacher forcing, and validation reports that loss and the share of forms written
exactly (every answer token the model's first choice: the greedy output, which
the grammar only ever narrows). Every prompt starts with the same system message,
so its frozen-layer states are computed once, not once per example.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finetune.config import FinetuneConfig
from finetune.train import (FrozenSplit, TrainState, as_input, encode, load_checkpoint, lr_at,
                            save_checkpoint)


@dataclass(frozen=True)
class Encoded:
    ids: list[int]  # prompt + answer + end of turn
    n_answer: int


def encode_pair(tokenizer, ex) -> Encoded:
    """The prompt exactly as the agent sends it, then the form the grammar would write."""
    answer = tokenizer.encode(ex.answer, add_special_tokens=False) + [tokenizer.eos_token_id]
    return Encoded(encode(tokenizer, ex.messages) + answer, len(answer))


class PrefixStates:
    """Frozen-layer states of prompts that share a prefix (the system message): the prefix
    runs through the frozen layers once (``hidden``), each prompt's rest after it, with
    the prefix's key/value cache; ``__call__`` returns the rest's states only."""

    def __init__(self, split: FrozenSplit, prefix: list[int]):
        import torch

        if not prefix:
            raise ValueError("the prompts share no prefix (every state prompt starts with the "
                             "same system message)")
        self.split, self.prefix = split, prefix
        with torch.inference_mode():
            out = split._with_layers(list(split.layers[: split.cut]), torch.nn.Identity(),
                                     lambda: split.inner(input_ids=as_input(prefix, split.causal_lm),
                                                         use_cache=True))
        self.hidden, self.cache = out.last_hidden_state.clone(), out.past_key_values

    def __call__(self, ids: list[int]):
        import torch

        n = len(self.prefix)
        if ids[:n] != self.prefix or len(ids) <= n:
            raise ValueError("a prompt does not start with the shared prefix")
        with torch.inference_mode():
            cache = copy.deepcopy(self.cache)
            out = self.split._with_layers(
                list(self.split.layers[: self.split.cut]), torch.nn.Identity(),
                lambda: self.split.inner(input_ids=as_input(ids[n:], self.split.causal_lm),
                                         past_key_values=cache, use_cache=True))
            return out.last_hidden_state.clone()


class _PrefixKV:
    """Stands in for a key/value cache in the trainable layers: records the prefix's keys
    and values (with their gradients), then puts them before each prompt's own."""

    def __init__(self):
        self.kv, self.recording = {}, True

    def update(self, keys, values, layer_idx):
        import torch

        if self.recording:
            self.kv[layer_idx] = (keys, values)
            return keys, values
        pk, pv = self.kv[layer_idx]
        return torch.cat([pk, keys], dim=-2), torch.cat([pv, values], dim=-2)


def _top(split: FrozenSplit, hidden, start: int, kv: _PrefixKV, mask):
    import torch

    pos = torch.arange(start, start + hidden.shape[1], device=hidden.device)[None]
    pe = split.inner.rotary_emb(hidden, position_ids=pos)
    for layer in split.layers[split.cut:]:
        hidden = layer(hidden, attention_mask=mask, position_embeddings=pe, position_ids=pos,
                       past_key_values=kv)
    return split.inner.norm(hidden)


def batch_losses(split: FrozenSplit, prefix_hidden, rests) -> list[tuple]:
    """``(answer loss, exact)`` of several prompts that share a prefix: the trainable layers run the
    prefix once (its graph shared by every loss), then each prompt's rest. ``rests``:
    ``(rest states from PrefixStates, Encoded)`` pairs. Same numbers as
    ``answer_loss`` on each whole prompt; about a fifth of the work for a 190-token
    system message and a 40-token rest."""
    import torch

    kv = _PrefixKV()
    _top(split, prefix_hidden, 0, kv, None)  # causal: no mask needed
    kv.recording = False
    n = prefix_hidden.shape[1]
    losses = []
    for hidden, enc in rests:
        m = hidden.shape[1]
        mask = torch.ones(m, n + m, dtype=torch.bool, device=hidden.device).tril(diagonal=n)
        h = _top(split, hidden, n, kv, mask[None, None])
        logits = split.causal_lm.lm_head(h[0, -(enc.n_answer + 1):-1]).float()
        target = torch.tensor(enc.ids[-enc.n_answer:], device=logits.device)
        losses.append((torch.nn.functional.cross_entropy(logits, target),
                       bool((logits.argmax(-1) == target).all())))
    return losses


def shared_prefix(encoded: list[Encoded]) -> list[int]:
    """The longest token prefix every prompt starts with."""
    first = encoded[0].ids
    n = min(len(e.ids) - e.n_answer for e in encoded)
    for e in encoded[1:]:
        while n and e.ids[:n] != first[:n]:
            n -= 1
    return first[:n]


def answer_loss(model, enc: Encoded, split: FrozenSplit | None = None, hidden=None):
    """``(mean token cross-entropy over the answer, whether every token is the argmax)``."""
    import torch

    keep = enc.n_answer + 1  # the position before the first answer token predicts it
    if split is not None:
        logits = split.top_sequence_logits(hidden, keep)[:-1]
    else:
        logits = model(input_ids=as_input(enc.ids, model), logits_to_keep=keep).logits[0, :-1].float()
    target = torch.tensor(enc.ids[-enc.n_answer:], device=logits.device)
    loss = torch.nn.functional.cross_entropy(logits, target)
    return loss, bool((logits.argmax(-1) == target).all())


def evaluate(model, encoded: list[Encoded], split=None, prefix_hidden=None, rests=None,
             chunk: int = 50) -> dict:
    """Mean answer loss and exact-form share over ``encoded`` (through ``split`` from the
    shared prefix's and each prompt's ``rests`` frozen-layer states, when given)."""
    import torch

    was_training = model.training
    model.eval()
    results = []
    with torch.inference_mode():
        if split is None:
            results = [answer_loss(model, enc) for enc in encoded]
        else:
            for k in range(0, len(encoded), chunk):
                results += batch_losses(split, prefix_hidden,
                                        list(zip(rests[k:k + chunk], encoded[k:k + chunk])))
    model.train(was_training)
    return {"loss": float(np.mean([r[0].item() for r in results])),
            "exact": float(np.mean([r[1] for r in results])), "n": len(encoded)}


def train_state(model, tokenizer, config: FinetuneConfig, train_set, val_set, out: Path,
                log=print, progress: bool = True) -> TrainState:
    """Train the LoRA adapter of ``model`` (a peft model) on ``train_set`` (``StateExample``s);
    the adapter with the best validation (exact forms, then loss) is saved to ``out``."""
    import torch
    from tqdm import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    ckpt = out / "checkpoint"
    state = load_checkpoint(model, optimizer, ckpt) if (ckpt / "state.json").exists() else TrainState()
    if state.seen:
        log(f"resuming from {ckpt}: {state.seen} examples seen, {state.minutes:.1f} min")
    train_enc = [encode_pair(tokenizer, ex) for ex in train_set]
    val_enc = [encode_pair(tokenizer, ex) for ex in val_set]
    total = int(config.epochs * len(train_set))
    total_steps = math.ceil(total / config.batch_size)
    rng = np.random.default_rng(config.seed)
    order = np.concatenate([rng.permutation(len(train_set)) for _ in range(math.ceil(config.epochs))])
    frozen = None  # (split, prefix states, train rests, validation rests)
    if config.lora_layers and config.cache_frozen:
        split = FrozenSplit(model, config.lora_layers)
        bottom = PrefixStates(split, shared_prefix(train_enc + val_enc))
        t = time.perf_counter()
        rests = [bottom(e.ids) for e in tqdm(train_enc, desc="frozen layers (once)", unit="ex",
                                             disable=not progress, leave=False)]
        frozen = (split, bottom.hidden, rests, [bottom(e.ids) for e in val_enc])
        log(f"frozen layers: {len(train_enc) + len(val_enc)} prompts in "
            f"{time.perf_counter() - t:.0f}s (a shared prefix of {len(bottom.prefix)} tokens)")
    validation = (val_enc,) + ((frozen[0], frozen[1], frozen[3]) if frozen else ())
    if not state.curve:
        _validate(model, validation, state, None, out, log)
    model.train()
    started, losses = time.perf_counter() - state.minutes * 60, []
    bar = tqdm(total=total, initial=state.seen, desc="fine-tuning", unit="ex", disable=not progress)
    while state.seen < total:
        batch = [int(i) for i in order[state.seen: min(total, state.seen + config.batch_size)]]
        if frozen:
            split, prefix, rests, _ = frozen
            step = [r[0] for r in batch_losses(split, prefix, [(rests[i], train_enc[i]) for i in batch])]
        else:
            step = [answer_loss(model, train_enc[i])[0] for i in batch]
        (torch.stack(step).sum() / config.batch_size).backward()
        for g in optimizer.param_groups:
            g["lr"] = lr_at(state.step, total_steps, config)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        before, state.seen, state.step = state.seen, state.seen + len(batch), state.step + 1
        losses += [x.item() for x in step]
        bar.update(len(batch))
        bar.set_postfix(loss=f"{np.mean(losses[-200:]):.3f}")
        state.minutes = (time.perf_counter() - started) / 60
        out_of_time = state.minutes >= config.max_minutes
        if state.seen // config.eval_every > before // config.eval_every or state.seen == total \
                or out_of_time:
            _validate(model, validation, state, float(np.mean(losses[-config.eval_every:])), out, log)
            save_checkpoint(model, optimizer, state, ckpt)
        if out_of_time:
            log(f"stopped at the {config.max_minutes:g}-minute budget after {state.seen} examples")
            break
    bar.close()
    return state


def _validate(model, validation: tuple, state: TrainState, train_loss, out: Path, log) -> None:
    """Append a learning-curve point; save the adapter when it is the best so far."""
    t = time.perf_counter()
    v = evaluate(model, *validation)
    point = {"examples": state.seen, "minutes": round(state.minutes, 2), "train_loss": train_loss,
             "val_loss": v["loss"], "val_exact": v["exact"], "eval_s": round(time.perf_counter() - t, 1)}
    state.curve.append(point)
    loss = "-" if train_loss is None else f"{train_loss:.3f}"
    log(f"[{state.seen} examples, {state.minutes:.1f} min] train loss {loss}  val loss "
        f"{v['loss']:.3f}  exact forms {v['exact']:.3f}")
    best = state.best
    if state.seen and (best is None or (v["exact"], -v["loss"]) > (best["val_exact"], -best["val_loss"])):
        state.best = dict(point)
        model.save_pretrained(str(out))


def examples_hash(examples) -> str:
    import hashlib

    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.to_json(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()
