"""The systems an evaluation compares, behind one small interface.

A system ranks items for a ``Case`` (a user's training history). Systems
with a score for every item implement ``scores``; the others (retrieval
pipelines, LLM re-rankers) return an ordered pool from ``rank_pool``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from agent.types import DialogueState
from eval.protocols import Case

from agent.understand.state import known_user_state


class System(Protocol):
    name: str

    def rank(self, case: Case, k: int) -> list[int]: ...

    def rank_candidates(self, case: Case, candidates: list[int]) -> list[int]: ...


class ScoringSystem:
    """Base for systems that score every catalog item (Cornac's score/rank split)."""

    name = "scoring"

    def __init__(self, catalog):
        self.catalog = catalog
        self.size = catalog.max_id + 1
        self.valid = np.zeros(self.size, dtype=bool)
        self.valid[list(catalog.items)] = True

    def scores(self, case: Case) -> np.ndarray:
        raise NotImplementedError

    def _masked(self, case: Case) -> np.ndarray:
        s = np.asarray(self.scores(case), dtype=np.float64).copy()
        s[~self.valid] = -np.inf
        s[list(case.history)] = -np.inf
        return s

    def rank(self, case: Case, k: int) -> list[int]:
        s = self._masked(case)
        top = np.argpartition(-s, k)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return [int(i) for i in top if np.isfinite(s[i])]

    def rank_candidates(self, case: Case, candidates: list[int]) -> list[int]:
        s = self._masked(case)
        return sorted(candidates, key=lambda i: (-s[i], i))


class Popularity(ScoringSystem):
    name = "popularity"

    def __init__(self, catalog):
        super().__init__(catalog)
        self.pop = np.zeros(self.size)
        for it in catalog.items.values():
            self.pop[it.id] = it.popularity

    def scores(self, case: Case) -> np.ndarray:
        return self.pop


class ItemKNN(ScoringSystem):
    """Sum of co-watch cosine similarities to every history item."""

    name = "itemknn"

    def __init__(self, catalog):
        super().__init__(catalog)
        pop = Popularity(catalog).pop
        self.tie_break = 1e-6 * pop / max(1.0, pop.max())

    def scores(self, case: Case) -> np.ndarray:
        s = np.asarray(self.catalog.cowatch[list(case.history)].sum(axis=0)).ravel()
        # Popularity breaks ties, so users with no co-watched items still get a list.
        return s + self.tie_break


class EmbeddingRetrieval(ScoringSystem):
    """Cosine between each item's text embedding and the mean of the user's recent items'."""

    name = "retrieval"

    def __init__(self, catalog, item_vectors: dict[int, np.ndarray], recent: int = 10):
        super().__init__(catalog)
        dim = len(next(iter(item_vectors.values())))
        self.matrix = np.zeros((self.size, dim), dtype=np.float32)
        for i, v in item_vectors.items():
            if i < self.size:
                self.matrix[i] = v / (np.linalg.norm(v) or 1.0)
        self.recent = recent

    def scores(self, case: Case) -> np.ndarray:
        u = self.matrix[list(case.history[-self.recent:])].mean(axis=0)
        return self.matrix @ (u / (np.linalg.norm(u) or 1.0))


def case_state(case: Case) -> DialogueState:
    """The dialogue state a user with this history would be in: recent items liked,
    everything watched already seen."""
    return known_user_state(case.history)


class PoolSystem:
    """Base for systems that return an ordered pool, not a score per item."""

    name = "pool"
    pool = 50

    def __init__(self, catalog):
        self.catalog = catalog
        self._pop = {it.id: it.popularity for it in catalog.items.values()}

    def rank_pool(self, case: Case) -> list[int]:
        raise NotImplementedError

    def rank(self, case: Case, k: int) -> list[int]:
        return self.rank_pool(case)[:k]

    def rank_candidates(self, case: Case, candidates: list[int]) -> list[int]:
        """Candidates in pool order; those outside the pool follow by popularity.
        (So in the sampled protocol an LLM re-ranks the full-ranking pool, not the
        sampled items: reports label this.)"""
        pos = {i: r for r, i in enumerate(self.rank_pool(case))}
        return sorted(candidates, key=lambda i: (pos.get(i, len(pos)), -self._pop.get(i, 0), i))


class Hybrid(PoolSystem):
    """The agent's own retriever (semantic + co-watch + content + popularity, RRF)."""

    name = "hybrid"

    def __init__(self, catalog, retriever, pool: int = 50):
        super().__init__(catalog)
        self.retriever, self.pool = retriever, pool
        self._cache: dict[int, list] = {}

    def candidates(self, case: Case):
        # Kept for every user: LLM systems and their re-ranked variants reuse them.
        if case.user not in self._cache:
            self._cache[case.user] = self.retriever.retrieve(case_state(case), self.pool)
        return self._cache[case.user]

    def rank_pool(self, case: Case) -> list[int]:
        return [c.item_id for c in self.candidates(case)]


class LLMRerank(PoolSystem):
    """The agent's verbalizer ranker over the hybrid retriever's candidates: the top
    ``n_llm`` reordered by the LLM (fused with retrieval), the rest in retrieval order."""

    def __init__(self, name: str, hybrid: Hybrid, ranker, n_candidates: int = 30):
        super().__init__(hybrid.catalog)
        self.name, self.hybrid, self.ranker = name, hybrid, ranker
        self.n_candidates = n_candidates
        self._cache: dict[int, list[int]] = {}

    def rank_pool(self, case: Case) -> list[int]:
        if case.user not in self._cache:
            self.prepare([case], progress=False)
        return self._cache[case.user]

    def prepare(self, cases: list[Case], batch: int = 64, progress: bool = True) -> None:
        """Rank every case not ranked yet, ``batch`` prompts at a time in one
        ``rank_many`` call (concurrent requests a vLLM server batches)."""
        from tqdm import tqdm

        todo = list({c.user: c for c in cases if c.user not in self._cache}.values())
        bar = tqdm(total=len(todo), desc=f"{self.name} ranking", unit="user",
                   disable=not progress or not todo, leave=False)
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            pools = [self.hybrid.candidates(c) for c in chunk]
            ranked = self.ranker.rank_many([(case_state(c), p[: self.n_candidates])
                                            for c, p in zip(chunk, pools)])
            for c, p, r in zip(chunk, pools, ranked):
                self._cache[c.user] = ([x.item_id for x in r] +
                                       [x.item_id for x in p[self.n_candidates:]])
            bar.update(len(chunk))
        bar.close()


class _Entry:
    """An id (and its score, when the system has one) for ``agent.rank.rerank``."""

    def __init__(self, item_id: int, score: float | None = None):
        self.item_id, self.score = item_id, score


class TailRerank(PoolSystem):
    """Another pool system's list re-ranked by ``agent.rank.rerank`` at one ``tail_boost``
    (``llm-lora-tail:0.5``): one point of the accuracy vs long-tail frontier."""

    def __init__(self, base: PoolSystem, reranker, tail_boost: float):
        super().__init__(base.catalog)
        self.name = f"{base.name}-tail:{tail_boost:g}"
        self.base, self.reranker, self.tail_boost = base, reranker, tail_boost

    def prepare(self, cases: list[Case], progress: bool = True) -> None:
        getattr(self.base, "prepare", lambda *a, **k: None)(cases, progress=progress)

    def rank_pool(self, case: Case) -> list[int]:
        pool = [_Entry(i) for i in self.base.rank_pool(case)]
        return [e.item_id for e in self.reranker.rerank(pool, tail_boost=self.tail_boost)]
