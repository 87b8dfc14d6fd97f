"""In-process backend: a transformers causal LM on this machine's CPU (or GPU)."""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from agent.errors import BackendError
from agent.llm.base import Message
from agent.llm.flops import Shape, forward_flops, generation_flops

PREFIX_CACHES = 4  # prompt prefixes whose KV cache is kept (zero-, few-shot, a JSON form...)


@contextmanager
def model_errors(what: str):
    """Inference without autograd, with the model's own failures as ``BackendError``:
    torch reports out-of-memory (``torch.OutOfMemoryError``), device and kernel
    failures as ``RuntimeError``; the host running out of memory is ``MemoryError``.
    Only the model call goes in here, so a bug in building a prompt still raises."""
    import torch

    try:
        with torch.inference_mode():
            yield
    except (RuntimeError, MemoryError) as e:
        raise BackendError(f"the local model failed during {what}: "
                           f"{type(e).__name__}: {str(e)[:300]}") from e


def _shape_of(model) -> Shape | None:
    """The FLOP-counting shape of a llama-style model; None for one without decoder
    layers where ``Shape.of`` looks (its work is then counted in tokens only)."""
    try:
        return Shape.of(model)
    except (AttributeError, TypeError, ValueError):
        return None


class LocalBackend:
    """Runs a chat model with transformers.

    Args:
        model_path: a local folder (``config.json`` + safetensors) or a Hugging Face id.
        threads: torch intra-op threads; 0 leaves torch's default.
        model / tokenizer: already-loaded objects (tests pass tiny random models).
        adapter_path: a peft LoRA adapter folder to apply on top of the model.
        quant: ``"none"`` (fp32), ``"8bit"`` or ``"4bit"`` (nf4): bitsandbytes weights,
            which its CPU backend runs too.
        pack: pack an fp32 CPU model's layer weights for oneDNN (``agent.llm.packed``):
            prompts run ~10% faster, single decoded tokens a little slower.
    """

    def __init__(self, model_path: str | None = None, threads: int = 0, model=None, tokenizer=None,
                 adapter_path: str | None = None, quant: str = "none", pack: bool = True):
        import torch

        if threads:
            torch.set_num_threads(threads)
        if model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_path)
            # trust_remote_code stays off: only architectures transformers ships are loaded.
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32,
                                                         use_safetensors=True,
                                                         **quantization_kwargs(quant))
        if adapter_path and quant != "none":
            raise BackendError("an adapter on a quantized model is not merged in-process; use "
                               "TAILOR_QUANT=none with TAILOR_ADAPTER")
        if adapter_path:
            from peft import PeftModel

            # Merged, the adapter costs nothing per token; logits match the unmerged
            # model to ~3e-7 (measured), far below what the ranking can see.
            model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
        self.model = model.eval()
        self.packed = 0  # layers whose weights are packed
        if pack and quant == "none":
            from agent.llm.packed import pack_linears

            self.packed = pack_linears(self.model)
        self.tokenizer = tokenizer
        self.name = Path(str(model_path or getattr(model.config, "_name_or_path", "local"))).name
        if adapter_path:
            self.name += "+" + Path(adapter_path).name
        self._label_ids: dict[tuple[str, ...], list[int]] = {}
        # KV caches of recent prompt prefixes (token ids -> cache), newest last: a
        # process that alternates zero- and few-shot prompts keeps both warm.
        self._prefixes: OrderedDict[tuple[int, ...], object] = OrderedDict()
        # One forward pass at a time: the API runs turns in threads, and the prefix
        # cache is shared state (the CPU is one resource anyway).
        self._lock = threading.Lock()
        self._grammars = None  # (xgrammar compiler, {schema: compiled grammar}), built on use
        # FLOPs are counted for full-precision weights (a quantized layer's parameter
        # count is of its packed storage, not of the products it computes)
        self._shape = _shape_of(self.model) if quant == "none" else None
        # The model's work since load (``stats``): forward passes, tokens computed, FLOPs
        # (``agent.llm.flops``) and seconds; updated under the lock.
        self._work = {"forward_passes": 0, "tokens": 0, "flops": 0.0, "seconds": 0.0}

    def _count(self, tokens: int, flops, seconds: float) -> None:
        w = self._work
        w["forward_passes"] += 1
        w["tokens"] += tokens
        w["flops"] += flops() if self._shape else 0.0
        w["seconds"] += seconds

    def stats(self) -> dict:
        """The model's work since load: what a server's FLOP-limited rate is measured by."""
        with self._lock:
            return {**self._work, "flops_counted": self._shape is not None}

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                                  tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of ``messages`` under this model's chat template."""
        return len(self._prompt_ids(messages))

    def label_ids(self, labels: Sequence[str]) -> list[int]:
        """Token id of each label; every label must be exactly one token."""
        key = tuple(labels)
        if key not in self._label_ids:
            ids = []
            for label in labels:
                toks = self.tokenizer.encode(label, add_special_tokens=False)
                if len(toks) != 1:
                    raise BackendError(f"label {label!r} is {len(toks)} tokens for this tokenizer")
                ids.append(toks[0])
            self._label_ids[key] = ids
        return self._label_ids[key]

    def _prefix_cache(self, messages: Sequence[Message], ids: list[int]):
        """KV cache of everything before the last user message (system prompt and
        few-shot demonstrations), computed once and reused while it stays the same.
        Returns ``(prefix length, a private copy of the cache)`` or ``(0, None)``."""
        import copy

        import torch

        if len(messages) < 2:
            return 0, None
        text = self.tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False)
        prefix = self.tokenizer.encode(text, add_special_tokens=False)
        if len(prefix) >= len(ids) or ids[: len(prefix)] != prefix:
            return 0, None  # this template does not render the prefix as a prefix
        key = tuple(prefix)
        if key not in self._prefixes:
            t0 = time.perf_counter()
            with model_errors("a prompt prefix"):
                out = self.model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1)
            self._count(len(prefix), lambda: forward_flops(self._shape, len(prefix)),
                        time.perf_counter() - t0)
            self._prefixes[key] = out.past_key_values
            while len(self._prefixes) > PREFIX_CACHES:
                self._prefixes.popitem(last=False)
        self._prefixes.move_to_end(key)
        return len(prefix), copy.deepcopy(self._prefixes[key])

    def label_logprobs(self, messages: Sequence[Message], labels: Sequence[str]) -> list[float]:
        with self._lock:
            return self._label_logprobs(messages, labels)

    def _label_logprobs(self, messages: Sequence[Message], labels: Sequence[str]) -> list[float]:
        import torch

        ids = self._prompt_ids(messages)
        label_ids = self.label_ids(labels)
        start, cache = self._prefix_cache(messages, ids)
        t0 = time.perf_counter()
        with model_errors("ranking"):
            # logits_to_keep=1: only the last position's logits are computed (saves a
            # vocab-sized matmul per prompt token).
            out = self.model(input_ids=torch.tensor([ids[start:]]), past_key_values=cache,
                             use_cache=cache is not None, logits_to_keep=1)
            logprobs = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        new = len(ids) - start
        self._count(new, lambda: forward_flops(self._shape, new, past=start),
                    time.perf_counter() - t0)
        return logprobs[label_ids].tolist()

    def generate(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        with self._lock:
            return self._generate(conversations, max_new_tokens)

    def _generate(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int,
                  streamer=None, logits_processor=None) -> list[str]:
        import torch

        if not conversations:
            return []
        prompts = [self._prompt_ids(c) for c in conversations]
        width = max(map(len, prompts))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
            else self.tokenizer.eos_token_id
        # Left padding so every row's next token comes right after its prompt.
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        t0 = time.perf_counter()
        with model_errors("generation"):
            out = self.model.generate(input_ids=input_ids, attention_mask=attention,
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
                                      streamer=streamer, logits_processor=logits_processor)
        steps = out.shape[1] - width  # every row computes the padded width and each step
        self._count(len(prompts) * (width + steps), lambda: len(prompts) * generation_flops(
            self._shape, width, steps), time.perf_counter() - t0)
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]

    def generate_json(self, messages: Sequence[Message], schema: dict, max_new_tokens: int) -> str:
        """Greedy text that follows the JSON ``schema``: xgrammar masks, at every step,
        the tokens that would break it (the same grammar engine vLLM uses)."""
        import json

        import xgrammar

        key = json.dumps(schema)  # property order kept: the model fills them in order
        with self._lock:
            if self._grammars is None:
                info = xgrammar.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.model.config.vocab_size)
                self._grammars = (xgrammar.GrammarCompiler(info), {})
            compiler, compiled = self._grammars
            if key not in compiled:
                compiled[key] = compiler.compile_json_schema(key, any_whitespace=False)
            return self._generate([messages], max_new_tokens, logits_processor=[
                xgrammar.contrib.hf.LogitsProcessor(compiled[key])])[0]

    def stream_many(self, conversations: Sequence[Sequence[Message]],
                    max_new_tokens: int) -> Iterator[tuple[int, str]]:
        """Like ``generate``, but yields ``(conversation index, new text)`` as the batch
        decodes, one step at a time (the same greedy tokens ``generate`` returns)."""
        if not conversations:
            return
        out: queue.Queue = queue.Queue()
        streamer = _RowStreamer(out)

        def work():
            try:
                with self._lock:
                    self._generate(conversations, max_new_tokens, streamer=streamer)
            except BaseException as e:  # handed to the consumer, which raises it
                out.put(e)
            finally:
                out.put(None)

        threading.Thread(target=work, daemon=True, name="tailor-stream").start()
        rows = [_RowText(self.tokenizer) for _ in conversations]
        while (step := out.get()) is not None:
            if isinstance(step, BaseException):
                raise step
            for k, token in enumerate(step):
                delta = rows[k].add(token)
                if delta:
                    yield k, delta


class _RowStreamer:
    """A transformers streamer for a batch: skips the prompt, then puts each step's
    tokens (one per row) on a queue."""

    def __init__(self, out: queue.Queue):
        self.out, self.prompt_seen = out, False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.out.put(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


class _RowText:
    """One row's text so far; ``add`` returns what a new token adds. Ends at the first
    end-of-sequence token (later steps are padding). Holds text back while it ends in
    an unfinished multi-byte character."""

    def __init__(self, tokenizer):
        self.tokenizer, self.tokens, self.sent, self.done = tokenizer, [], 0, False

    def add(self, token: int) -> str:
        if self.done or token == self.tokenizer.eos_token_id:
            self.done = True
            return ""
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        delta, self.sent = text[self.sent:], len(text)
        return delta


def quantization_kwargs(quant: str) -> dict:
    """``from_pretrained`` arguments for a bitsandbytes mode (``{}`` for ``"none"``)."""
    if quant == "none":
        return {}
    import logging

    import torch
    from transformers import BitsAndBytesConfig

    if quant == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_compute_dtype=torch.float32)
    elif quant == "8bit":
        config = BitsAndBytesConfig(load_in_8bit=True)
        # bitsandbytes logs a warning on every 8-bit matmul that it casts fp32 inputs to fp16.
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    else:
        raise BackendError(f"quant must be none, 8bit or 4bit, not {quant!r}")
    return {"quantization_config": config, "device_map": "cpu"}
