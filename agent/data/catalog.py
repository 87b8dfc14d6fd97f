"""The catalog at run time: items, popularity and co-watch neighbours of one dataset."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from agent.errors import AssetError
from agent.types import Item

RECENT_STEPS = 3  # the last items of a history that ``followed_by`` reads
QUALITY_PRIOR = 25  # pseudo-ratings at the global mean in the quality prior
NEIGHBOURS = 50  # an item counts as co-watched with another if among its 50 nearest
MAX_FLAGGED = 500  # an entity with more values (a film's cast) gets no index flags


class Catalog:
    """Read-only view of a prepared dataset (see ``agent.domain.movielens.loaders``)."""

    def __init__(self, items: list[Item], meta: dict, user: np.ndarray, item: np.ndarray,
                 timestamp: np.ndarray, head: set[int], rating: np.ndarray | None = None,
                 schema=None, times: np.ndarray | None = None):
        self.items = {it.id: it for it in items}
        self._schema = schema  # agent.domain.schema.CatalogSchema; None: MovieLens
        self.hidden: set[int] = set()  # items taken off sale (agent.data.live): never picked
        self.values_version = 0  # bumped when an item brings a facet value new to the catalog
        self.meta = meta
        self.user, self.item, self.timestamp = user, item, timestamp
        # When each interaction happened (Unix seconds). ``timestamp`` orders them; in a
        # catalog rebuilt from histories it holds positions (``catalog_from_histories``),
        # and these the real times the recent-popularity columns count by.
        self.times = timestamp if times is None else times
        self.head = head
        self.rating = rating
        self._neighbours: dict[int, set[int]] = {}

    @classmethod
    def load(cls, folder: Path) -> Catalog:
        if not (folder / "items.jsonl").exists():
            raise AssetError(f"no prepared dataset in {folder}; run `tailor data {folder.name}` first")
        rows = [json.loads(line) for line in open(folder / "items.jsonl", encoding="utf-8")]
        items = [Item.from_dict(r) for r in rows]
        head = {r["id"] for r in rows if r.get("head")}
        meta = json.loads((folder / "meta.json").read_text())
        from agent.data.imports import dataset_schema

        schema = dataset_schema(folder)
        from agent.data.live import apply_updates

        with np.load(folder / "interactions.npz") as z:
            rating = z["rating"] if "rating" in z.files else None
            catalog = cls(items, meta, z["user"], z["item"], z["timestamp"], head, rating, schema)
        apply_updates(catalog, folder)  # items added or hidden while the API ran
        return catalog

    @property
    def schema(self):
        """What the items' fields mean (``agent.domain.schema``)."""
        if self._schema is None:
            from agent.domain.movielens import SCHEMA
            from agent.domain.schema import CatalogSchema

            self._schema = CatalogSchema.load(SCHEMA)
        return self._schema

    def note_values(self, item: Item) -> None:
        """After an item is added or changed online: if it has a category or entity value
        the catalog had not, recount ``facet_values`` and bump ``values_version`` (what
        a request may name follows at the next turn, not the next restart)."""
        known = self.__dict__.get("facet_values")
        if known is None:
            return
        for field, values in known.items():
            facet = self.schema.facet(field)
            if facet.values:  # the schema's own list: new values are not requestable
                continue
            if any(str(x) not in values for x in item.values(field)):
                del self.__dict__["facet_values"]
                self.values_version += 1
                return

    @cached_property
    def facet_values(self) -> dict[str, tuple[str, ...]]:
        """The values of each filterable category, and of each filterable entity with at
        most ``MAX_FLAGGED`` of them: the schema's list, or those the items have."""
        out = {}
        for f in self.schema.facets:
            if f.kind == "range" or (f.kind == "entity" and not f.filter):
                continue
            if f.values:
                out[f.field] = f.values
                continue
            seen = set()
            for it in self.items.values():
                seen.update(it.values(f.field))
            if f.kind == "category" or len(seen) <= MAX_FLAGGED:
                out[f.field] = tuple(sorted(map(str, seen)))
        return out

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self.items

    def get(self, item_id: int) -> Item:
        return self.items[item_id]

    @property
    def max_id(self) -> int:
        return max(self.items)

    @cached_property
    def cowatch(self):
        """Item-item cosine similarity over who watched what (scipy CSR)."""
        from agent.data.stats import cowatch_matrix

        return cowatch_matrix(self.user, self.item, self.max_id + 1)

    def cowatched_with(self, item_ids, n: int) -> list[tuple[int, float]]:
        """Items most co-watched with ``item_ids`` (summed cosine), strongest first."""
        # an item added while running has no co-watching yet (outside the matrix)
        ids = [i for i in item_ids if i in self.items and i < self.cowatch.shape[0]]
        if not ids:
            return []
        scores = np.asarray(self.cowatch[ids].sum(axis=0)).ravel()
        scores[ids] = 0.0
        top = np.argsort(-scores, kind="stable")[:n]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    @cached_property
    def transitions(self):
        """What users watched within a few items after each item (``transition_matrix``)."""
        from agent.data.stats import first_watches, transition_matrix

        return transition_matrix(first_watches(self.user, self.item, self.timestamp).values(),
                                 self.max_id + 1)

    def followed_by(self, sequence, n: int) -> list[tuple[int, float]]:
        """Items other users watched soon after the last ``RECENT_STEPS`` items of
        ``sequence`` (time order; the latest weighs 1, the one before 1/2, then 1/4),
        strongest first; the sequence's own items are left out."""
        known = [i for i in sequence if i in self.items and i < self.transitions.shape[0]]
        if not known:
            return []
        recent = known[-RECENT_STEPS:]
        weights = np.array([0.5 ** k for k in range(len(recent))][::-1], dtype=np.float32)
        scores = np.asarray(self.transitions[recent].T @ weights).ravel()
        scores[known] = 0.0
        top = np.argsort(-scores, kind="stable")[:n]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    @cached_property
    def ease(self):
        """EASE fitted on these interactions (``agent.models.ease``), or None for a catalog
        too large for its dense weights."""
        from agent.models.ease import fit_ease

        return fit_ease(self.user, self.item, self.max_id + 1)

    def neighbours(self, item_id: int, n: int = NEIGHBOURS) -> set[int]:
        """The ``n`` items most co-watched with ``item_id`` ("co-watched" in prompts)."""
        if item_id not in self._neighbours:
            self._neighbours[item_id] = {i for i, _ in self.cowatched_with([item_id], n)}
        return self._neighbours[item_id]

    @cached_property
    def quality(self) -> dict[int, float]:
        """Each item's mean rating shrunk towards the global mean by ``QUALITY_PRIOR``
        pseudo-ratings (a Bayesian average): a film five people gave 5 stars ranks below
        one hundreds rated 4.5. Without ratings, log popularity stands in."""
        if self.rating is None or not len(self.rating):
            return {i: float(np.log1p(it.popularity)) for i, it in self.items.items()}
        n = np.bincount(self.item, minlength=self.max_id + 1)
        total = np.bincount(self.item, weights=self.rating, minlength=self.max_id + 1)
        mean = float(self.rating.mean())
        shrunk = (total + QUALITY_PRIOR * mean) / (n + QUALITY_PRIOR)
        return {i: float(shrunk[i]) for i in self.items}

    @cached_property
    def recent(self):
        """What was popular when (``agent.data.stats.RecentCounts`` over ``times``)."""
        from agent.data.stats import RecentCounts

        return RecentCounts(self.item, self.times)

    @cached_property
    def _last_times(self) -> dict[int, int]:
        last: dict[int, int] = {}
        for u, t in zip(self.user.tolist(), np.asarray(self.times).tolist()):
            last[u] = max(t, last.get(u, t))
        return last

    def last_time(self, user: int) -> int | None:
        """When ``user`` last interacted (None: never): the moment a known user's
        recent-popularity columns are counted at, so they never see the future."""
        return self._last_times.get(user)

    def is_tail(self, item_id: int) -> bool:
        return item_id not in self.head


def catalog_from_histories(catalog: Catalog, histories: dict[int, list[int]], label: str) -> Catalog:
    """``catalog``'s items with popularity, head/tail and co-watch rebuilt from
    ``histories`` alone (a held-out item must not raise its own popularity or
    co-watch counts). Timestamps become positions within each history; ``times`` keep
    each (user, item)'s first time in ``catalog`` (positions too if one is missing)."""
    from dataclasses import replace

    from agent.data.stats import head_tail_split, popularity_counts

    users = sorted(histories)
    user_arr = np.array([u for u in users for _ in histories[u]], dtype=np.int32)
    item_arr = np.array([i for u in users for i in histories[u]], dtype=np.int32)
    ts_arr = np.array([k for u in users for k in range(len(histories[u]))], dtype=np.int64)
    counts = popularity_counts(item_arr, list(catalog.items))
    head, _ = head_tail_split(counts)
    items = [replace(it, popularity=counts[it.id]) for it in catalog.items.values()]
    return Catalog(items, dict(catalog.meta, split=label), user_arr, item_arr, ts_arr, head,
                   schema=catalog.schema, times=_first_times(catalog, user_arr, item_arr))


def _first_times(catalog: Catalog, user: np.ndarray, item: np.ndarray) -> np.ndarray | None:
    """When each (user, item) pair first happened in ``catalog``; None if one did not."""
    src_u, src_i = catalog.user.astype(np.int64), catalog.item.astype(np.int64)
    src_t = np.asarray(catalog.times, dtype=np.int64)
    width = int(max(src_i.max(initial=0), np.max(item, initial=0))) + 1
    order = np.lexsort((src_t, src_i, src_u))
    key = src_u[order] * width + src_i[order]
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
    keys, when = key[first], src_t[order][first]
    wanted = user.astype(np.int64) * width + item.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    if not len(keys) or not np.array_equal(keys[pos], wanted):
        return None
    return when[pos]
