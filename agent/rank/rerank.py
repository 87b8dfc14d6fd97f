"""Re-rank a ranked list towards the long tail and towards variety, under user control.

Two knobs, both 0 by default (accuracy only):

- ``tail_boost`` in [0, 1] blends each item's relevance with its novelty. Both
  are calibrated to [0, 1] so the knob means the same on every list: relevance
  is the entry's score min-max scaled over the list (1 = the best, 0 = the
  worst; the rank position when entries carry no scores), and novelty is one
  minus its popularity percentile in the catalog (inverse propensity on a rank
  scale: 1 = the least-watched item). 0 keeps the order, 1 puts the
  least-watched *retrieved* items first; it only ever reorders what retrieval
  and ranking found, so relevance is bounded by the pool. Scores, not positions:
  an item the ranker barely preferred gives way to a less-watched one, an item
  it clearly preferred does not. On ML-100K validation cases (out-of-fold fusion,
  README) that bought the same tail share and coverage as the rank position at
  +3.6% NDCG@10.
- ``diversity`` in [0, 1] is maximal marginal relevance (Carbonell & Goldstein
  1998): items are picked greedily by ``(1 - d) * objective - d * overlap``, the
  overlap being the largest Jaccard with the items already picked of what each item is
  (the schema's ``kind_facet``: MovieLens' genres, a shop's category).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import is_dataclass, replace
from typing import Sequence

from agent.errors import InputError


def check_knob(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{name} must be a number from 0 to 1, not {value!r}")
    return float(value)


class PopularityScale:
    """Popularity percentile of each item among the catalog's items (ties share a value)."""

    def __init__(self, catalog):
        self.sorted = sorted(it.popularity for it in catalog.items.values())
        self.pop = {it.id: it.popularity for it in catalog.items.values()}

    def percentile(self, item_id: int) -> float:
        """Share of catalog items strictly less popular than ``item_id``."""
        return bisect_left(self.sorted, self.pop.get(item_id, 0)) / max(1, len(self.sorted) - 1)


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """Shared values over all values of the two (genres; a shop's categories).

    >>> jaccard(("Action", "Sci-Fi"), ("Sci-Fi", "Horror"))
    0.3333333333333333
    """
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def relevance(ranked: Sequence) -> list[float]:
    """Each entry's ``score`` min-max scaled to [0, 1] over the list; the rank position
    (1 = first, 0 = last) when some entry has no finite score or all scores are equal.

    >>> class E:
    ...     def __init__(self, score=None): self.score = score
    >>> relevance([E(3.0), E(2.5), E(-1.0)])
    [1.0, 0.875, 0.0]
    >>> relevance([E(), E(), E()])
    [1.0, 0.5, 0.0]
    """
    scores = [getattr(r, "score", None) for r in ranked]
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in scores):
        lo, hi = min(scores, default=0.0), max(scores, default=0.0)
        if hi > lo:
            return [(v - lo) / (hi - lo) for v in scores]
    n = len(ranked)
    return [1 - k / max(1, n - 1) for k in range(n)]


def tail_floor(ranked: Sequence, need: int, k: int, is_tail) -> list:
    """``ranked`` with at least ``need`` long-tail entries in its first ``k``, where it
    has them: the best-placed tail entries from beyond ``k`` take the places of the
    lowest-placed head entries within it, which move just below; the rest keep
    their order. ``need`` is how many tail items the sequence model puts in its own
    first ``k`` for this history: a user whose history leads it to little-watched
    items gets as many of them from the fusion, which learned from all users what
    usually comes next and leans to the familiar (README, "Two stages", run H).

    >>> tail_floor([1, 2, 3, 4, 5, 6], 2, 3, lambda i: i > 4)
    [1, 5, 6, 2, 3, 4]
    >>> tail_floor([1, 5, 2, 6], 1, 2, lambda i: i > 4)  # already there
    [1, 5, 2, 6]
    """
    ranked = list(ranked)
    top, rest = ranked[:k], ranked[k:]
    lack = need - sum(1 for r in top if is_tail(r))
    if lack <= 0:
        return ranked
    promote = [r for r in rest if is_tail(r)][:lack]
    drop = [r for r in reversed(top) if not is_tail(r)][:len(promote)]
    gone = {id(r) for r in drop + promote}
    return ([r for r in top if id(r) not in gone] + promote + drop[::-1]
            + [r for r in rest if id(r) not in gone])


LIKE_WEIGHT = 1.0  # likeness to the named titles against the fused relevance, both in [0, 1]


def with_likeness(ranked: Sequence, likeness: Sequence[float], weight: float = LIKE_WEIGHT
                  ) -> list:
    """``ranked`` re-scored ``relevance + weight * likeness / max likeness`` and sorted,
    best first (ties keep their order): unchanged when nothing is alike at all.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class E:
    ...     item_id: int
    ...     score: float
    >>> [(e.item_id, e.score) for e in with_likeness([E(1, 3.0), E(2, 2.0), E(3, 1.0)],
    ...                                              [0.0, 1.5, 0.75])]
    [(2, 1.5), (1, 1.0), (3, 0.5)]
    """
    top = max(likeness, default=0.0)
    if top <= 0:
        return list(ranked)
    blend = [rel + weight * like / top for rel, like in zip(relevance(ranked), likeness)]
    order = sorted(range(len(ranked)), key=lambda j: -blend[j])
    return [replace(ranked[j], score=blend[j]) if is_dataclass(ranked[j]) else ranked[j]
            for j in order]


class TailDiversityReranker:
    """Reorders ``Ranked`` entries (see ``agent.rank.verbalizer``); scores are rewritten to the
    re-ranked objective so callers that sort by score keep this order."""

    def __init__(self, catalog, tail_boost: float = 0.0, diversity: float = 0.0,
                 floor: bool = False):
        """``floor``: ``floored`` keeps the sequence model's share of tail items."""
        self.catalog = catalog
        self.scale = PopularityScale(catalog)
        self.tail_boost = check_knob("tail_boost", tail_boost)
        self.diversity = check_knob("diversity", diversity)
        self.floor = floor
        kind = catalog.schema.kind_facet  # variety among picks: genres, a shop's category
        self.kind_field = kind.field if kind is not None else None
        self._facts = None  # (ContentFacts, id -> row): what the named titles are alike by

    def floored(self, ranked: Sequence, candidates: Sequence, k: int) -> list:
        """``ranked`` with at least as many long-tail items in its first ``k`` as the
        sequence model has in its own first ``k`` among ``candidates`` (``tail_floor``);
        unchanged without ``floor``, or for a catalog that does not split head and tail."""
        is_tail = getattr(self.catalog, "is_tail", None)
        if not self.floor or is_tail is None:
            return list(ranked)
        need = sum(1 for c in candidates if c.sequential_rank is not None
                   and c.sequential_rank < k and is_tail(c.item_id))
        return tail_floor(ranked, need, k, lambda r: is_tail(r.item_id))

    def like_named(self, ranked: Sequence, state) -> list:
        """``ranked`` re-scored by how alike each entry is to the titles the user named
        as well as by its fused relevance (``with_likeness``), before the tail and
        diversity re-ranking. Likeness is what the content source ranks by
        (``ContentFacts.overlap``: MovieLens' genre Jaccard, plus 0.5 for a shared
        director and 0.25 for a shared cast member). "Something like The Godfather" asks
        for films like it, where the fusion learned what people watch next: Return of the
        Jedi, co-watched and sharing one genre of three, came before The Godfather: Part
        II. Unchanged when the user asked for kinds themselves (genres, a mood, titles
        outside the catalog) or named no title."""
        items = self.catalog.items
        liked = [items[i] for i in state.liked if i in items]
        if not liked or state.genres or state.moods or state.like_genres or not ranked:
            return list(ranked)
        facts, rows = self._content()
        if not facts.facets:
            return list(ranked)
        score = facts.overlap(liked)
        return with_likeness(ranked, [0.0 if rows.get(r.item_id) is None
                                      else float(score[rows[r.item_id]]) for r in ranked])

    def _content(self):
        """The catalog's ``ContentFacts`` and each id's row in it, built on first use."""
        if self._facts is None:
            from agent.retrieve.sources import ContentFacts

            facts = ContentFacts(list(self.catalog.items.values()), self.catalog.schema)
            self._facts = facts, {i: k for k, i in enumerate(facts.ids)}
        return self._facts

    def objective(self, ranked: Sequence, tail_boost: float | None = None) -> list[float]:
        """``(1 - t) * relevance + t * novelty`` for each entry, in the incoming order."""
        t = self.tail_boost if tail_boost is None else tail_boost
        return [(1 - t) * rel + t * (1 - self.scale.percentile(r.item_id))
                for rel, r in zip(relevance(ranked), ranked)]

    def rerank(self, ranked: Sequence, k: int | None = None,
               tail_boost: float | None = None, diversity: float | None = None) -> list:
        """The first ``k`` (default all) entries of the re-ranked list.

        ``tail_boost`` / ``diversity`` override this re-ranker's knobs for one call
        (a user moving the slider)."""
        t = self.tail_boost if tail_boost is None else check_knob("tail_boost", tail_boost)
        d = self.diversity if diversity is None else check_knob("diversity", diversity)
        if (t == 0 and d == 0) or len(ranked) < 2:
            return list(ranked)[:k]
        base = self.objective(ranked, t)  # no shared state: the API re-ranks from threads
        limit = len(ranked) if k is None else min(k, len(ranked))
        if d == 0:  # no diversity term: the greedy picks below reduce to a sort
            order = sorted(range(len(ranked)), key=lambda j: (-base[j], j))[:limit]
            return [replace(ranked[j], score=base[j]) if is_dataclass(ranked[j]) else ranked[j]
                    for j in order]
        kinds = [self.catalog.get(r.item_id).values(self.kind_field)
                 if self.kind_field and r.item_id in self.catalog else () for r in ranked]
        left, picked, out = list(range(len(ranked))), [], []
        while len(out) < limit:
            def mmr(j: int) -> float:
                overlap = max((jaccard(kinds[j], kinds[p]) for p in picked), default=0.0)
                return (1 - d) * base[j] - d * overlap
            best = max(left, key=lambda j: (mmr(j), -j))
            left.remove(best)
            picked.append(best)
            out.append(replace(ranked[best], score=mmr(best)) if is_dataclass(ranked[best])
                       else ranked[best])
        return out
