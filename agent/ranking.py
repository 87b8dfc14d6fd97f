"""Rank candidates with an LLM in one forward pass (LlamaRec-style verbalizer).

Candidates are lettered A, B, C, ... in the prompt; the model's next-token
log-probability of each letter is that candidate's LLM score. The final score
fuses it with the retriever: ``z(retrieval) + w * z(llm)``; ``w = 0`` is pure
retrieval, so the LLM can only reorder what retrieval found, never add items.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from agent.types import Candidate, DialogueState, Item
from prompts import load_prompt

LABELS = tuple(string.ascii_uppercase)
RANK_PROMPTS = ("rank_system", "rank_user", "rank_demos")


@dataclass(frozen=True)
class Ranked:
    item_id: int
    score: float
    retrieval_score: float
    llm_score: float | None


def rank_bucket(rank: int) -> str:
    """Coarse retriever rank (0-based in, 1-based out) shown to the model.

    >>> [rank_bucket(r) for r in (0, 5, 19, 20)]
    ['1-5', '6-10', '11-20', '21+']
    """
    for lo, hi in ((1, 5), (6, 10), (11, 20)):
        if rank < hi:
            return f"{lo}-{hi}"
    return "21+"


def candidate_line(label: str, item: Item, cowatched: int, n_liked: int, rank: int) -> str:
    """``C. Terminator 2: Judgment Day (1991) | Action, Sci-Fi | co-watched 2/2 | rank 1-5``"""
    genres = ", ".join(item.genres) or "unknown genre"
    line = f"{label}. {item.label} | {genres}"
    if n_liked:
        line += f" | co-watched {cowatched}/{n_liked}"
    return line + f" | rank {rank_bucket(rank)}"


def constraints_text(state: DialogueState) -> str:
    parts = []
    if state.genres:
        parts.append("genre " + " or ".join(state.genres))
    if state.excluded_genres:
        parts.append("no " + ", ".join(state.excluded_genres))
    if state.year_min is not None or state.year_max is not None:
        parts.append(f"released {state.year_min or '...'}-{state.year_max or '...'}")
    return "; ".join(parts) or "none"


def titles(ids: Sequence[int], items: dict[int, Item]) -> str:
    return "; ".join(items[i].label for i in ids if i in items) or "none"


def build_messages(state: DialogueState, lines: list[str], items: dict[int, Item],
                   few_shot: bool) -> list[dict]:
    """System prompt, optional demonstrations as earlier turns, then this request."""
    user = load_prompt("rank_user")
    messages = [{"role": "system", "content": load_prompt("rank_system").text}]
    if few_shot:
        for demo in load_prompt("rank_demos").json():
            cand = "\n".join(f"{LABELS[k]}. {c}" for k, c in enumerate(demo["candidates"]))
            messages.append({"role": "user", "content": user.render(
                liked=demo["liked"], disliked=demo["disliked"], constraints=demo["constraints"],
                request=demo["request"], candidates=cand)})
            messages.append({"role": "assistant", "content": LABELS[demo["answer"]]})
    messages.append({"role": "user", "content": user.render(
        liked=titles(state.liked, items), disliked=titles(state.disliked, items),
        constraints=constraints_text(state), request=state.query.strip() or "none",
        candidates="\n".join(lines))})
    return messages


def zscore(x: np.ndarray) -> np.ndarray:
    """Standardize; a constant vector maps to zeros.

    >>> zscore(np.array([1.0, 2.0, 3.0])).round(3).tolist()
    [-1.225, 0.0, 1.225]
    """
    sd = x.std()
    return np.zeros_like(x) if sd < 1e-9 else (x - x.mean()) / sd


class VerbalizerRanker:
    """Reorders the first ``n_llm`` candidates with the LLM; the rest keep retrieval order."""

    def __init__(self, backend, catalog, n_llm: int = 20, weight: float = 0.5,
                 few_shot: bool = True, calibrate: bool = True):
        self.backend, self.catalog = backend, catalog
        self.n_llm, self.weight, self.few_shot = n_llm, weight, few_shot
        self.calibrate = calibrate
        self._priors: dict[tuple[int, bool], np.ndarray] = {}

    def label_prior(self, n: int) -> np.ndarray:
        """Label log-probabilities for a content-free prompt with ``n`` "N/A" candidates.

        Small models prefer some letters whatever the candidates (mostly "A");
        subtracting this prior ("contextual calibration", Zhao et al. 2021)
        removes that position bias. Computed once per list length and mode.
        """
        key = (n, self.few_shot)
        if key not in self._priors:
            lines = [f"{LABELS[k]}. N/A" for k in range(n)]
            messages = build_messages(DialogueState(), lines, {}, self.few_shot)
            self._priors[key] = np.array(self.backend.label_logprobs(messages, LABELS[:n]))
        return self._priors[key]

    def messages(self, state: DialogueState, cands: list[Candidate]) -> list[dict]:
        liked = list(state.liked)
        neighbours = [self.catalog.neighbours(i) for i in liked]
        lines = []
        for k, c in enumerate(cands):
            n_co = sum(1 for nb in neighbours if c.item_id in nb)
            lines.append(candidate_line(LABELS[k], self.catalog.get(c.item_id), n_co, len(liked), k))
        return build_messages(state, lines, self.catalog.items, self.few_shot)

    def rank(self, state: DialogueState, cands: list[Candidate]) -> list[Ranked]:
        head, tail = cands[: self.n_llm], cands[self.n_llm:]
        if not head:
            return []
        retr = np.array([c.score for c in head])
        llm = np.array(self.backend.label_logprobs(self.messages(state, head),
                                                   LABELS[: len(head)]))
        if self.calibrate:
            llm = llm - self.label_prior(len(head))
        fused = zscore(retr) + self.weight * zscore(llm)
        order = np.argsort(-fused, kind="stable")
        out = [Ranked(head[k].item_id, float(fused[k]), head[k].score, float(llm[k])) for k in order]
        floor = min(r.score for r in out)
        # Candidates the LLM did not see stay below those it did, in retrieval order.
        out += [Ranked(c.item_id, floor - 1 - k, c.score, None) for k, c in enumerate(tail)]
        return out
