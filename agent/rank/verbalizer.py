"""Rank candidates with an LLM in one forward pass (LlamaRec-style verbalizer).

Candidates are lettered A, B, C, ... in the prompt; the model's next-token
log-probability of each letter is that candidate's LLM score. The final score
fuses it with the retriever: ``z(retrieval) + w * z(llm)``; ``w = 0`` is pure
retrieval, so the LLM can only reorder what retrieval found, never add items.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from agent.domain.movielens.film import film, film_roles
from agent.domain.roles import Roles
from agent.types import Candidate, DialogueState, Item
from prompts import load_prompt

LABELS = tuple(string.ascii_uppercase)
RANK_PROMPTS = ("rank_system", "rank_user", "rank_demos", "rank_catalog_system",
                "rank_catalog_user")


@dataclass(frozen=True)
class Ranked:
    item_id: int
    score: float
    retrieval_score: float
    llm_score: float | None


def short_title(title: str, words: int = 4) -> str:
    """The title without alternate titles in parentheses, cut to ``words`` words: prompt
    tokens are the ranking's cost (SmolLM2's tokenizer spends one token per digit).

    >>> short_title("Shanghai Triad (Yao a yao yao dao waipo qiao)")
    'Shanghai Triad'
    >>> short_title("Free Willy 2: The Adventure Home")
    'Free Willy 2: The...'
    """
    base = re.sub(r"\s*\([^)]*\)", "", title).strip() or title
    cut = base.split()
    return " ".join(cut[:words]) + ("..." if len(cut) > words else "")


def decade(year: int | None) -> str:
    """A decade in few tokens.

    >>> [decade(y) for y in (1995, 1979, 2003, 1931, None)]
    ['90s', '70s', '2000s', '30s', '?']
    """
    if not year:
        return "?"
    d = year // 10 * 10
    return f"{d % 100:02d}s" if 1900 <= d < 2000 else f"{d}s"


@dataclass(frozen=True)
class Detail:
    """How much of each fact a ranking prompt spells out. ``DETAILS`` goes from the full
    prompt to the tersest; the ranker takes the first that fits its token budget."""

    title_words: int = 4
    genres: int = 2  # per candidate
    liked: int = 3  # liked titles named (the most recent; dominant genres use them all)
    request_words: int = 30


DETAILS = (Detail(), Detail(request_words=12), Detail(3, 2, 3, 12), Detail(3, 1, 3, 12),
           Detail(2, 1, 2, 8), Detail(2, 1, 1, 0))
MAX_PROMPT_TOKENS = 300  # per ranking prompt (system + request; few-shot demonstrations extra)


def candidate_line(label: str, item: Item, cowatched: int, n_liked: int,
                   detail: Detail = DETAILS[0], roles: Roles | None = None) -> str:
    """``D. Get Shorty | 90s | Action, Comedy | co 3/5``: title, decade, two genres, and
    with how many of the ``n_liked`` liked items it is co-watched (left out when none;
    ``roles``: the catalog's film roles, default MovieLens')."""
    roles = roles if roles is not None else film_roles()
    genres = ", ".join(roles.genres_of(item)[: detail.genres]) or "?"
    title = short_title(item.title, detail.title_words)
    line = f"{label}. {title} | {decade(roles.year_of(item))} | {genres}"
    return line + (f" | co {cowatched}/{n_liked}" if cowatched else "")


def candidate_block(lines: Sequence[str]) -> str:
    """The candidate lines in retriever order: the letter is the retriever's rank (the
    system prompt says so), which costs no tokens, where a rank bucket per line or per
    group cost 10-40 of the ~300 a prompt may take."""
    return "\n".join(lines)


def dominant_genres(items: Sequence[Item], n: int = 3, roles: Roles | None = None) -> str:
    """The ``n`` genres most frequent among ``items`` (ties by first appearance)."""
    roles = roles if roles is not None else film_roles()
    counts: dict[str, int] = {}
    for it in items:
        for g in roles.genres_of(it):
            counts[g] = counts.get(g, 0) + 1
    return ", ".join(sorted(counts, key=lambda g: -counts[g])[:n]) or "none"


def constraints_text(state: DialogueState) -> str:
    parts = []
    if state.genres:
        parts.append("genre " + " or ".join(state.genres))
    if state.excluded_genres:
        parts.append("no " + ", ".join(state.excluded_genres))
    if state.year_min is not None or state.year_max is not None:
        parts.append(f"released {state.year_min or '...'}-{state.year_max or '...'}")
    return "; ".join(parts) or "none"


LIKED_SHOWN = DETAILS[0].liked


def titles(ids: Sequence[int], items: dict[int, Item], words: int = 4) -> str:
    return "; ".join(short_title(items[i].title, words) for i in ids if i in items) or "none"


def context_lines(disliked: str, constraints: str, request: str) -> str:
    """The optional prompt lines, each only when it says something (tokens are time)."""
    out = [f"{name}: {value}\n" for name, value in
           (("Disliked", disliked), ("Constraints", constraints), ("Request", request))
           if value and value != "none"]
    return "".join(out)


def demo_messages() -> list[dict]:
    """The few-shot demonstrations as earlier (user, assistant) turns, rendered with the
    same template and candidate lines as a real request."""
    user = load_prompt("rank_user")
    messages = []
    for demo in load_prompt("rank_demos").json():
        liked = [film(0, t, y, tuple(g)) for t, y, g in demo["liked"]]
        lines = [candidate_line(LABELS[k], film(0, c["title"], c["year"], tuple(c["genres"])),
                                c["co"], len(liked)) for k, c in enumerate(demo["candidates"])]
        messages.append({"role": "user", "content": user.render(
            liked="; ".join(short_title(it.title) for it in liked[-LIKED_SHOWN:]) or "none",
            genres=dominant_genres(liked),
            context=context_lines(demo["disliked"], demo["constraints"], demo["request"]),
            candidates=candidate_block(lines))})
        messages.append({"role": "assistant", "content": LABELS[demo["answer"]]})
    return messages


def build_messages(state: DialogueState, lines: list[str], items: dict[int, Item],
                   few_shot: bool, detail: Detail = DETAILS[0],
                   roles: Roles | None = None) -> list[dict]:
    """System prompt, optional demonstrations as earlier turns, then this request."""
    messages = [{"role": "system", "content": load_prompt("rank_system").text}]
    if few_shot:
        messages += demo_messages()
    liked = [items[i] for i in state.liked if i in items]
    w = detail.title_words
    messages.append({"role": "user", "content": load_prompt("rank_user").render(
        liked=titles(state.liked[-detail.liked:], items, w),
        genres=dominant_genres(liked, roles=roles),
        context=context_lines(titles(state.disliked, items, w), constraints_text(state),
                              " ".join(state.query.split()[: detail.request_words])),
        candidates=candidate_block(lines))})
    return messages


def estimate_tokens(messages: Sequence[dict]) -> int:
    """A rough, tokenizer-free count for when the backend cannot count (about three
    characters a token, plus a few per message for the chat template); not a bound:
    digit-heavy text can take more tokens than this says.

    >>> estimate_tokens([{"role": "user", "content": "x" * 90}])
    35
    """
    return sum(len(m["content"]) // 3 + 5 for m in messages)


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
                 few_shot: bool = True, calibrate: bool = True,
                 max_tokens: int | None = MAX_PROMPT_TOKENS, count_tokens=None):
        """``max_tokens``: the prompt's budget without few-shot demonstrations (prompt
        tokens are the ranking's cost); ``count_tokens(messages)`` counts a prompt with
        the model's own tokenizer and chat template. It defaults to the backend's
        ``count_tokens`` where it has one; a backend that cannot count (returns None)
        gets ``estimate_tokens``."""
        self.backend, self.catalog = backend, catalog
        self.n_llm, self.weight, self.few_shot = n_llm, weight, few_shot
        self.calibrate, self.max_tokens = calibrate, max_tokens
        self.count_tokens = count_tokens or getattr(backend, "count_tokens", None)
        self._priors: dict[tuple[int, bool], np.ndarray] = {}
        schema = getattr(catalog, "schema", None)
        # An imported catalog gets the prompt written from its schema (catalog_prompt).
        self.roles = schema.roles if schema is not None else film_roles()
        self.films = self.roles.films
        self._demos = None  # the catalog prompt's demonstrations, drawn once

    def label_prior(self, n: int) -> np.ndarray:
        """Label log-probabilities for a content-free prompt with ``n`` "N/A" candidates.

        Small models prefer some letters whatever the candidates (mostly "A");
        subtracting this prior ("contextual calibration", Zhao et al. 2021)
        removes that position bias. Computed once per list length and mode.
        """
        key = (n, self.few_shot)
        if key not in self._priors:
            lines = [f"{LABELS[k]}. N/A" for k in range(n)]
            messages = build_messages(DialogueState(), lines, {}, self.few_shot) \
                if self.films else self._catalog_messages(DialogueState(), lines, 0)
            self._priors[key] = np.array(self.backend.label_logprobs(messages, LABELS[:n]))
        return self._priors[key]

    def tokens(self, messages: list[dict]) -> int:
        n = self.count_tokens(messages) if self.count_tokens else None
        return estimate_tokens(messages) if n is None else n

    def messages(self, state: DialogueState, cands: list[Candidate]) -> list[dict]:
        """The ranking prompt at the most detail that fits ``max_tokens`` (the tersest
        level when none does). The budget is checked on the prompt without
        demonstrations, so few-shot and zero-shot prompts say the same of a request."""
        liked = list(state.liked)
        neighbours = [self.catalog.neighbours(i) for i in liked]
        co = [sum(1 for nb in neighbours if c.item_id in nb) for c in cands]
        if not self.films:
            return self._fit_catalog_prompt(state, [c.item_id for c in cands], co)
        items = [self.catalog.get(c.item_id) for c in cands]
        for detail in DETAILS:
            lines = [candidate_line(LABELS[k], it, co[k], len(liked), detail, self.roles)
                     for k, it in enumerate(items)]
            bare = build_messages(state, lines, self.catalog.items, False, detail, self.roles)
            if self.max_tokens is None or detail is DETAILS[-1] or self.tokens(bare) <= self.max_tokens:
                break
        return (build_messages(state, lines, self.catalog.items, True, detail, self.roles)
                if self.few_shot else bare)

    def _catalog_messages(self, state: DialogueState, lines, compact: int) -> list[dict]:
        from agent.rank.catalog_prompt import catalog_demos, catalog_messages

        if self.few_shot and self._demos is None:
            self._demos = catalog_demos(self.catalog)
        return catalog_messages(state, lines, self.catalog, self.few_shot, compact, self._demos)

    def _fit_catalog_prompt(self, state: DialogueState, ids: list[int], co) -> list[dict]:
        """``messages`` for an imported catalog: the least compact prompt that fits."""
        from agent.rank.catalog_prompt import COMPACT, catalog_lines, catalog_messages

        for compact in range(len(COMPACT)):
            lines = catalog_lines(ids, co, len(state.liked), self.catalog, compact)
            bare = catalog_messages(state, lines, self.catalog, False, compact)
            if self.max_tokens is None or compact == len(COMPACT) - 1 or \
                    self.tokens(bare) <= self.max_tokens:
                break
        return self._catalog_messages(state, lines, compact) if self.few_shot else bare

    def rank(self, state: DialogueState, cands: list[Candidate]) -> list[Ranked]:
        return self.rank_many([(state, cands)])[0]

    def rank_many(self, requests: Sequence[tuple[DialogueState, list[Candidate]]]
                  ) -> list[list[Ranked]]:
        """``rank`` for many ``(state, candidates)`` at once: the prompts go to the
        backend together (``label_logprobs_many``), so a server can batch them."""
        from agent.llm.base import label_logprobs_many

        heads = [cands[: self.n_llm] for _, cands in requests]
        todo = [k for k, head in enumerate(heads) if head]
        scores = label_logprobs_many(self.backend,
                                     [self.messages(requests[k][0], heads[k]) for k in todo],
                                     [LABELS[: len(heads[k])] for k in todo])
        llm = dict(zip(todo, scores))
        return [self._fuse(heads[k], cands[self.n_llm:], np.array(llm[k])) if k in llm else
                [Ranked(c.item_id, c.score, c.score, None) for c in cands]  # n_llm = 0
                for k, (_, cands) in enumerate(requests)]

    def _fuse(self, head: list[Candidate], tail: list[Candidate], llm: np.ndarray) -> list[Ranked]:
        retr = np.array([c.score for c in head])
        if self.calibrate:
            llm = llm - self.label_prior(len(head))
        fused = zscore(retr) + self.weight * zscore(llm)
        order = np.argsort(-fused, kind="stable")
        out = [Ranked(head[k].item_id, float(fused[k]), head[k].score, float(llm[k])) for k in order]
        # Candidates the LLM did not see stay below those it did, in retrieval order, on
        # the head's retrieval z scale: the tail re-ranker reads score gaps, not positions.
        floor = min(r.score for r in out)
        sd = retr.std()
        for k, c in enumerate(tail):
            z = (c.score - retr.mean()) / sd if sd >= 1e-9 else floor - 1
            floor = min(floor - 1e-6, z)
            out.append(Ranked(c.item_id, float(floor), c.score, None))
        return out
