"""The ranking forward pass, and the verbalizer against generation-based ranking.

Prompts are the agent's own: the state each scripted message leads to, the
retriever's candidates for it, and ``VerbalizerRanker.messages``. The verbalizer
reads every candidate's score off one forward pass; the generation baseline asks
the same model, on the same prompt (only the last line asks for the full order),
to write the letters of all candidates best first ("A, B, C, ...") greedily: the
cheapest generative answer. A second baseline writes the candidates' titles best
first, one per line, as a generative recommender answers (LlamaRec's comparison).
Both reuse the cached system prompt and demonstrations, as the agent does, so the
ratio compares like with like.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from bench.stats import summary

GENERATION_ASK = "Rank all candidates, best first: reply with their letters separated by commas."
TITLES_ASK = "Rank all candidates, best first: reply with their titles, one per line."


@dataclass(frozen=True)
class RankPrompt:
    """One real ranking prompt and the labels it scores."""

    messages: list[dict]
    labels: tuple[str, ...]


def ranking_prompts(recommender, dialogues) -> list[RankPrompt]:
    """The distinct ranking prompts of the scripted messages' states (no model call).

    States are rebuilt from the messages alone, so a reference to the last picks ("more
    like the second one") can leave a state, and its prompt, unchanged: such repeats are
    dropped, because a server's prefix cache would answer them from memory."""
    from agent.rank.verbalizer import LABELS

    ranker = recommender.ranker
    out, seen = [], set()
    for dialogue in dialogues:
        for k in range(len(dialogue)):
            state = recommender.state_from(list(dialogue[: k + 1]))
            if recommender.is_vague(state):
                continue
            cands = recommender.retriever.retrieve(state, recommender.n_candidates)[: ranker.n_llm]
            messages = ranker.messages(state, cands) if cands else None
            key = repr(messages)
            if messages and key not in seen:
                seen.add(key)
                out.append(RankPrompt(messages, LABELS[: len(cands)]))
    return out


def generation_messages(messages: Sequence[dict], ask: str = GENERATION_ASK) -> list[dict]:
    """The same conversation with the last user turn asking for the whole order.

    >>> generation_messages([{"role": "user", "content": "A. x\\nLetter?"}])[0]["content"]
    'A. x\\nRank all candidates, best first: reply with their letters separated by commas.'
    """
    last = dict(messages[-1])
    body = last["content"]
    cut = body.rfind("\n")
    last["content"] = (body[: cut + 1] if cut >= 0 else body + "\n") + ask
    return [*messages[:-1], last]


def candidate_titles(p: RankPrompt) -> list[str]:
    """The titles of the lettered candidate lines, as the prompt spells them.

    >>> candidate_titles(RankPrompt([{"role": "user", "content":
    ...     "Liked: X\\nA. Heat | 90s | Action\\nB. Se7en | 90s | Crime | co 1/2\\nLetter?"}],
    ...     ("A", "B")))
    ['Heat', 'Se7en']
    """
    lines = p.messages[-1]["content"].split("\n")
    return [ln[3:].split(" | ")[0] for ln in lines if ln[:3] in {f"{x}. " for x in p.labels}]


def answer_tokens(tokenizer, labels: Sequence[str]) -> int:
    """Tokens in the complete answer ``"A, B, C, ..."``: what generation must write."""
    return len(tokenizer.encode(", ".join(labels), add_special_tokens=False))


def title_answer_tokens(tokenizer, p: RankPrompt) -> int:
    """Tokens in the complete answer of titles, one per line."""
    return len(tokenizer.encode("\n".join(candidate_titles(p)), add_special_tokens=False))


def prompt_ids(tokenizer, messages: Sequence[dict], generation_prompt: bool = True) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=generation_prompt,
                                         tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def timed(fn: Callable) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class LocalRankingProbe:
    """Times one in-process ``LocalBackend`` on ranking prompts, several ways."""

    def __init__(self, backend):
        self.backend, self.model, self.tok = backend, backend.model, backend.tokenizer
        self._prefix: tuple[tuple[int, ...], object] | None = None

    def token_counts(self, p: RankPrompt) -> dict:
        full = prompt_ids(self.tok, p.messages)
        prefix = prompt_ids(self.tok, p.messages[:-1], generation_prompt=False)
        cached = len(prefix) if full[: len(prefix)] == prefix else 0
        return {"prompt": len(full), "cached_prefix": cached, "computed": len(full) - cached}

    def prefix_cache(self, p: RankPrompt):
        """``(prefix length, KV cache)`` of the system prompt and demonstrations."""
        import torch

        prefix = prompt_ids(self.tok, p.messages[:-1], generation_prompt=False)
        if self._prefix is None or self._prefix[0] != tuple(prefix):
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([prefix]), use_cache=True,
                                 logits_to_keep=1)
            self._prefix = (tuple(prefix), out.past_key_values)
        return len(prefix), self._prefix[1]

    def verbalizer_s(self, p: RankPrompt) -> float:
        """The agent's path: ``label_logprobs`` (template, tokens, cached prefix, softmax)."""
        return timed(lambda: self.backend.label_logprobs(p.messages, p.labels))

    def forward_cached_s(self, p: RankPrompt) -> float:
        """The model call alone on the tokens after the cached prefix."""
        import torch

        ids = prompt_ids(self.tok, p.messages)
        start, cache = self.prefix_cache(p)
        cache = copy.deepcopy(cache)
        x = torch.tensor([ids[start:]])
        with torch.inference_mode():
            return timed(lambda: self.model(input_ids=x, past_key_values=cache, use_cache=True,
                                            logits_to_keep=1))

    def forward_full_s(self, p: RankPrompt) -> float:
        """The model call on the whole prompt, no prefix cache."""
        import torch

        x = torch.tensor([prompt_ids(self.tok, p.messages)])
        with torch.inference_mode():
            return timed(lambda: self.model(input_ids=x, logits_to_keep=1))

    def generation_s(self, p: RankPrompt, titles: bool = False) -> tuple[float, str]:
        """Greedy generation of the full answer's length (letters, or ``titles``), from
        the cached prefix; the seconds include templating and the cache copy, as
        ``verbalizer_s`` does."""
        import torch

        if titles:
            n_new, gen_messages = title_answer_tokens(self.tok, p), generation_messages(
                p.messages, TITLES_ASK)
        else:
            n_new, gen_messages = answer_tokens(self.tok, p.labels), generation_messages(p.messages)
        t0 = time.perf_counter()
        ids = prompt_ids(self.tok, gen_messages)
        _, cache = self.prefix_cache(p)
        with torch.inference_mode():
            out = self.model.generate(input_ids=torch.tensor([ids]),
                                      past_key_values=copy.deepcopy(cache),
                                      max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                      pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id)
        seconds = time.perf_counter() - t0
        return seconds, self.tok.decode(out[0, len(ids):], skip_special_tokens=True)


def measure_local(backend, prompts: list[RankPrompt], shape, gflops: float,
                  log=print) -> dict:
    """Every in-process ranking figure over ``prompts``, each prompt once per method
    (methods interleaved so that noise from other work spreads over all of them);
    ``shape`` (``agent.llm.flops.Shape``) counts each prompt's FLOPs for its floor."""
    from agent.llm.flops import forward_flops
    from bench.floor import flop_floor_s

    probe = LocalRankingProbe(backend)
    warm = prompts[0]
    probe.verbalizer_s(warm), probe.forward_cached_s(warm), probe.forward_full_s(warm)
    probe.generation_s(warm), probe.generation_s(warm, titles=True)
    rows = []
    for k, p in enumerate(prompts):
        tokens = probe.token_counts(p)
        gen_s, gen_text = probe.generation_s(p)
        titles_s, _ = probe.generation_s(p, titles=True)
        row = {**tokens, "labels": len(p.labels),
               "answer_tokens": answer_tokens(probe.tok, p.labels),
               "title_answer_tokens": title_answer_tokens(probe.tok, p),
               "verbalizer_s": probe.verbalizer_s(p), "forward_cached_s": probe.forward_cached_s(p),
               "forward_full_s": probe.forward_full_s(p), "generation_s": gen_s,
               "generation_titles_s": titles_s, "generation_text": gen_text,
               "floor_cached_s": flop_floor_s(forward_flops(
                   shape, tokens["computed"], past=tokens["cached_prefix"]), gflops),
               "floor_full_s": flop_floor_s(forward_flops(shape, tokens["prompt"]), gflops)}
        rows.append(row)
        log(f"  ranking prompt {k + 1}/{len(prompts)}: {tokens['prompt']} tokens "
            f"({tokens['computed']} after the cached prefix), verbalizer "
            f"{row['verbalizer_s']:.2f} s, generation {gen_s:.2f} s (titles {titles_s:.2f} s)")
    return summarize_local(rows)


def summarize_local(rows: list[dict]) -> dict:
    """Summaries and ratios from per-prompt rows (see ``measure_local``).

    >>> r = summarize_local([{"prompt": 600, "cached_prefix": 400, "computed": 200,
    ...     "answer_tokens": 19, "verbalizer_s": 0.5, "forward_cached_s": 0.4,
    ...     "forward_full_s": 1.5, "generation_s": 2.0, "floor_cached_s": 0.25,
    ...     "floor_full_s": 0.75, "title_answer_tokens": 60, "generation_titles_s": 6.0}])
    >>> r["verbalizer_speedup"], r["ranking_vs_flop_floor"], r["forward_full_vs_flop_floor"]
    (4.0, 2.0, 2.0)
    >>> r["verbalizer_speedup_vs_titles"]
    12.0
    """
    def col(name):
        return [r[name] for r in rows]

    def ratios(a, b):
        return summary([x / y for x, y in zip(col(a), col(b))])

    speedup = ratios("generation_s", "verbalizer_s")
    titles = all("generation_titles_s" in r for r in rows)
    vs_floor = ratios("verbalizer_s", "floor_cached_s")
    return {
        "n_prompts": len(rows),
        "tokens": {k: summary(col(k)) for k in ("prompt", "cached_prefix", "computed",
                                                 "answer_tokens", "title_answer_tokens")
                   if titles or k != "title_answer_tokens"},
        "seconds": {k: summary(col(k)) for k in ("verbalizer_s", "forward_cached_s",
                                                  "forward_full_s", "generation_s",
                                                  "generation_titles_s")
                    if titles or k != "generation_titles_s"},
        "floor_s": {"cached": summary(col("floor_cached_s")),
                    "full": summary(col("floor_full_s"))},
        # Medians of per-prompt ratios: each prompt is its own like-for-like comparison.
        "verbalizer_speedup": speedup["p50"],
        "verbalizer_speedup_vs_titles": (ratios("generation_titles_s", "verbalizer_s")["p50"]
                                         if titles else None),
        "ranking_vs_flop_floor": vs_floor["p50"],
        "forward_cached_vs_flop_floor": ratios("forward_cached_s", "floor_cached_s")["p50"],
        "forward_full_vs_flop_floor": ratios("forward_full_s", "floor_full_s")["p50"],
        "per_prompt": rows,
    }


def measure_server(backend, prompts: list[RankPrompt], answer_len: Callable[[RankPrompt], int],
                   before_each: Callable[[], None] = lambda: None, log=print) -> dict:
    """Verbalizer and generation through an ``OpenAIBackend`` (vLLM): the same prompts;
    generation is forced to the full answer's length (vLLM's ``min_tokens``).
    ``before_each`` runs before every timed request (outside the timing): the caller
    empties the server's prefix cache there, since the generation prompt shares all
    but its last line with the verbalizer's and would otherwise be mostly cached."""
    def generate(p):
        n = answer_len(p)
        backend.client.chat.completions.create(
            model=backend.name, messages=generation_messages(p.messages), max_tokens=n,
            temperature=0.0, extra_body={"min_tokens": n})

    backend.label_logprobs(prompts[0].messages, prompts[0].labels)
    generate(prompts[0])
    verbalizer, generation = [], []
    for p in prompts:
        before_each()
        verbalizer.append(timed(lambda: backend.label_logprobs(p.messages, p.labels)))
        before_each()
        generation.append(timed(lambda: generate(p)))
    speedups = [g / v for g, v in zip(generation, verbalizer)]
    log(f"  vLLM ranking: verbalizer p50 {summary(verbalizer)['p50']:.2f} s, generation p50 "
        f"{summary(generation)['p50']:.2f} s")
    return {"seconds": {"verbalizer_s": summary(verbalizer), "generation_s": summary(generation)},
            "verbalizer_speedup": summary(speedups)["p50"]}
