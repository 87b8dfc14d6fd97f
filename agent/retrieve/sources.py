"""Candidate retrieval: the sequential model, what came next after the last items,
items co-watched with the liked ones, a semantic Chroma query with filters, items
sharing their catalog facts, and popular items that fit; fused by the learned fusion
(``agent.rank.fusion``), or by weighted reciprocal rank (RRF) without one."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, Sequence

import numpy as np

from agent.types import Candidate, DialogueState
from agent.understand.state import chroma_where, constraint, genre_fit

RRF_K = 60  # the usual constant; damps the weight of the very first ranks
POOL = 50  # items taken from each source before fusion


class Retriever(Protocol):
    def retrieve(self, state: DialogueState, n: int) -> list[Candidate]: ...


# "avoid" (items like the disliked ones) counts against an item: a dislike changes what
# comes next, not only that one title.
SOURCE_WEIGHTS = {"semantic": 1.0, "cowatch": 1.0, "content": 1.0, "popular": 0.3, "avoid": -0.5,
                  "quality": 1.0, "sequential": 1.0, "transition": 1.0}

POPULAR_ASKED = 1.5  # the popularity list's weight when the user asks for popular films


def rrf_fuse(ranked_lists: dict[str, list[tuple[int, float]]], n: int,
             weights: dict[str, float] | None = None) -> list[Candidate]:
    """Weighted reciprocal-rank fusion of ``[(item_id, raw_score)]`` lists, best first.

    >>> [c.item_id for c in rrf_fuse({"a": [(1, .9), (2, .8)], "b": [(2, 5.0), (3, 1.0)]}, 3)]
    [2, 1, 3]
    """
    weights = weights or {}
    scores: dict[int, float] = {}
    raw: dict[int, dict[str, float]] = {}
    for source, ranked in ranked_lists.items():
        w = weights.get(source, 1.0)
        for rank, (item_id, value) in enumerate(ranked):
            scores[item_id] = scores.get(item_id, 0.0) + w / (RRF_K + rank + 1)
            raw.setdefault(item_id, {})[source] = value
    order = sorted(scores, key=lambda i: (-scores[i], i))[:n]
    return [Candidate(i, scores[i], tuple(sorted(raw[i])), raw[i].get("semantic"),
                      raw[i].get("cowatch")) for i in order]


def asks_for_standing(state: DialogueState) -> bool:
    """Whether the user asked for films by their standing: well liked ("a must-see
    classic"), lesser known ("hidden gems") or popular. The learned fusion learned from
    histories what people watch next and knows nothing of such asks (its training states
    have none), so these turns are fused by RRF, whose weights carry them: the quality
    list, the tail filter, the popularity list at full weight."""
    return state.well_liked or state.lesser_known or state.tail_boost == 0.0


def _pick(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``scores[ids]``, NaN for an id past the end (an item added since the model was fit).

    >>> _pick(np.array([0.5, 1.5]), np.array([1, 5])).tolist()
    [1.5, nan]
    """
    out = np.full(len(ids), np.nan)
    ok = ids < len(scores)
    out[ok] = scores[ids[ok]]
    return out


class ContentFacts:
    """The values of the facets the schema compares items by (``CatalogSchema.compared``:
    MovieLens' genres, director and cast; a shop's category and brand) as 0/1 matrices,
    so that comparing every item with a liked one is a few matrix products, not a loop
    over the catalog."""

    def __init__(self, items: Sequence, schema):
        from scipy import sparse

        self.ids = [it.id for it in items]
        self.facets, self.weights = schema.compared, schema.weights
        self.cols: dict[str, dict[str, int]] = {}
        self.flags, self.counts = {}, {}
        for f in self.facets:
            col = self.cols[f.field] = {}
            rows, cols = [], []
            for r, it in enumerate(items):
                for v in sorted({str(v) for v in it.values(f.field)}):
                    rows.append(r)
                    cols.append(col.setdefault(v, len(col)))
            m = sparse.csc_matrix((np.ones(len(rows)), (rows, cols)),
                                  shape=(len(items), max(1, len(col))))
            self.flags[f.field] = m
            self.counts[f.field] = np.asarray(m.sum(axis=1)).ravel()

    def shared(self, field: str, values) -> np.ndarray:
        """Per row, how many of ``values`` it has in ``field``."""
        cols = [self.cols[field][v] for v in values if v in self.cols[field]]
        if not cols:
            return np.zeros(len(self.ids))
        return np.asarray(self.flags[field][:, cols].sum(axis=1)).ravel()

    def overlap(self, liked: Sequence) -> np.ndarray:
        """Per row, the mean over ``liked`` of each compared facet's weight times its
        likeness: a category's Jaccard of the two value sets, an entity's 1 when a name is
        shared (MovieLens: genre Jaccard + 0.5 a shared director + 0.25 a cast member)."""
        score = np.zeros(len(self.ids))
        for lk in liked:
            for f in self.facets:
                values = {str(v) for v in lk.values(f.field)}
                inter = self.shared(f.field, values)
                if f.kind == "category":
                    union = self.counts[f.field] + len(values) - inter
                    like = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
                else:
                    like = (inter > 0).astype(float)
                w = self.weights[f.field]
                score += like if w == 1.0 else w * like
        return score / len(liked)


class HybridRetriever:
    """Chroma semantic search, co-watch, what came next, the sequence model, content overlap
    and popularity, fused."""

    def __init__(self, collection, embedder, catalog, people=None, reference=None,
                 sequential=None, fusion=None):
        self.collection = collection
        self.embedder = embedder
        self.catalog = catalog
        self.people = people  # agent.understand.people.PeopleIndex: the items of a named person
        self.reference = reference  # ReferenceFilms: titles outside the catalog
        self.sasrec = sequential  # agent.models.sasrec.SASRec over the catalog's ids, or None
        self.fusion = fusion  # agent.rank.fusion.FusionRanker: the learned fusion, or None (RRF)
        self._fitting: tuple[DialogueState | None, frozenset[int]] = (None, frozenset())
        self._facts: ContentFacts | None = None
        self._scores: tuple[tuple[int, ...], np.ndarray | None] = ((), None)

    def outside_films(self, state: DialogueState) -> list:
        """Titles named outside the catalog, as items to compare with (id -1)."""
        if self.reference is None:
            return []
        films = [self.reference.by_label(label) for label in state.outside]
        return [f.as_item() for f in films if f is not None]

    def fits(self, item, state: DialogueState) -> bool:
        """``satisfies`` plus the head/tail split that "hidden gems" asks for."""
        return item.id in self.fitting(state)

    def fitting(self, state: DialogueState) -> frozenset[int]:
        """The ids of every catalog item that ``fits``; the sources of one turn share it
        (the last state's set is kept: a known user's state blocks their whole history,
        and every source tests the whole catalog). Read once into a local: the API calls
        the retriever from several threads, and another state may replace the cache."""
        cached = self._fitting
        if cached[0] is not state:
            fits, gems = constraint(state, self.catalog.schema.roles), state.lesser_known
            hidden = self.catalog.hidden
            cached = (state, frozenset(i for i, it in self.catalog.items.items()
                                       if fits(it) and not (gems and not self.catalog.is_tail(i))
                                       and i not in hidden))
            self._fitting = cached
        return cached[1]

    def query_vector(self, state: DialogueState) -> np.ndarray | None:
        """Mean of the request text's embedding and the liked items' embeddings."""
        vectors = []
        if state.liked:
            got = self.collection.get(ids=[str(i) for i in state.liked], include=["embeddings"])
            vectors += [np.asarray(e, dtype=np.float32) for e in got["embeddings"]]
        outside = self.outside_films(state)
        if outside:  # embedded as the catalog's own documents are
            from agent.retrieve.index import item_document

            docs = [item_document(it, self.catalog.schema) for it in outside]
            vectors += list(self.embedder.encode(docs))
        words = [g for g in state.genres] + ([state.query] if state.query.strip() else [])
        # Genre names alone find nothing the filter does not keep, but the films whose text
        # says little else: obscure ones ("a mind-bending thriller" gave Baton Rouge).
        if words and (vectors or state.query.strip()):
            vectors.append(self.embedder.encode([" ".join(words)])[0])
        if not vectors:
            return None
        v = np.mean(vectors, axis=0)
        return v / (np.linalg.norm(v) or 1.0)

    def semantic(self, state: DialogueState, n: int) -> list[tuple[int, float]]:
        vector = self.query_vector(state)
        people_items = None
        if state.people:
            people_items = (self.people.items_of(state.people) if self.people is not None else
                            {i for i, it in self.catalog.items.items() if self.fits(it, state)})
        unwanted = None
        if state.excluded_people:
            unwanted = (self.people.items_of(state.excluded_people) if self.people is not None
                        else {i for i, it in self.catalog.items.items() if set(
                              state.excluded_people) & set(self.catalog.schema.roles.credits(it))})
        where = chroma_where(state, people_items, unwanted, self.catalog.schema)
        if vector is None:  # nothing to search by: the best liked, most what is asked, popular
            if state.well_liked or state.lesser_known:
                return self.quality(state, n)
            return self.by_fit(state, n) if state.moods or state.genres else self.popular(state, n)
        res = self.collection.query(query_embeddings=[vector], n_results=n, where=where,
                                    include=["distances", "metadatas"])
        return [(int(m["item_id"]), 1.0 - float(d))
                for m, d in zip(res["metadatas"][0], res["distances"][0])
                if int(m["item_id"]) not in self.catalog.hidden]

    def cowatched(self, state: DialogueState, n: int,
                  history: Sequence[int] = ()) -> list[tuple[int, float]]:
        """Items co-watched with the liked titles (and a known user's ``history``)."""
        seeds = list(dict.fromkeys([*history, *state.liked]))
        if not seeds:
            return []
        pool = self.catalog.cowatched_with(seeds, n * 10)
        fit = self.fitting(state)
        return [(i, s) for i, s in pool if i in fit][:n]

    def transition(self, state: DialogueState, n: int,
                   history: Sequence[int] = ()) -> list[tuple[int, float]]:
        """What other users watched soon after the last titles of a known user's
        ``history`` and then the liked titles, in the order they were said."""
        sequence = [i for i in history if i not in state.liked] + list(state.liked)
        if not sequence:
            return []
        fit = self.fitting(state)
        return [(i, s) for i, s in self.catalog.followed_by(sequence, n * 10) if i in fit][:n]

    @staticmethod
    def sequence_of(state: DialogueState, history: Sequence[int] = ()) -> list[int]:
        """A known user's ``history`` and then the liked titles, in the order they were
        said: what the sequence model reads."""
        return [i for i in history if i not in state.liked] + list(state.liked)

    def sequence_scores(self, sequence: Sequence[int]) -> np.ndarray:
        """The sequence model's scores of every item after ``sequence``; the last call's
        are kept (the sequential source and the fusion's features read the same turn's).
        Read once into a local: the API calls the retriever from several threads."""
        key, cached = self._scores
        if cached is None or key != tuple(sequence):
            cached = self.sasrec.scores(list(sequence))
            self._scores = (tuple(sequence), cached)
        return cached

    def model_scores(self, state: DialogueState, ids: Sequence[int],
                     history: Sequence[int] = ()) -> dict[str, np.ndarray]:
        """What the whole-catalog models say of candidates ``ids`` (the fusion's
        ``MODEL_FEATURES``): the sequence model's log-probability of each, its distance
        from the model's best score and its z-score (which compare across users, where a
        raw logit does not), EASE's scores (``Catalog.ease``: of the whole history and of
        its last items) and the candidate's popularity against the history's
        (``popularity_columns``). A model that is absent, or an id it never saw, gives NaN.

        The sequence model's three are taken over the items that fit the state (unseen,
        within its constraints): a known user's candidates, on which the fusion learns,
        and a chat's, within "comedies from the 90s", are then measured alike, from the
        best item the user could be offered."""
        from agent.rank.fusion import popularity_columns

        sequence = self.sequence_of(state, history)
        out: dict[str, np.ndarray] = {}
        if not sequence:
            return out
        ids = np.asarray(ids)
        if self.sasrec is not None:
            s = self.sequence_scores(sequence)
            fit = np.fromiter(self.fitting(state), dtype=np.int64)
            fit = fit[fit < len(s)]  # an item added since the model was trained: unscored
            v = s[fit] if len(fit) else s[1:]  # 0 pads sequences
            top = float(v.max())
            lse = top + float(np.log(np.exp(v - top).sum()))
            x = _pick(s, ids)
            out.update(sequential_logp=x - lse, sequential_gap=x - top,
                       sequential_z=(x - float(v.mean())) / (float(v.std()) or 1.0))
        ease = self.catalog.ease
        if ease is not None:
            out.update(ease.columns(sequence, ids))
        return dict(out, **popularity_columns(self.catalog, sequence, ids))

    def sequential(self, state: DialogueState, n: int,
                   history: Sequence[int] = ()) -> list[tuple[int, float]]:
        """What the sequence model predicts after a known user's ``history`` and then the
        liked titles, in the order they were said (its best ``n`` that fit)."""
        sequence = self.sequence_of(state, history)
        if self.sasrec is None or not sequence:
            return []
        scores = self.sequence_scores(sequence)
        fit, out = self.fitting(state), []
        for i in np.argsort(-scores, kind="stable").tolist():
            if i in fit:
                out.append((i, float(scores[i])))
                if len(out) == n:
                    break
        return out

    def content(self, state: DialogueState, n: int) -> list[tuple[int, float]]:
        """Items whose catalog facts overlap the liked items' (``ContentFacts.overlap``:
        MovieLens' genre Jaccard, plus a shared director (+0.5) or cast member (+0.25)),
        averaged over the liked items; popularity, then the id, breaks ties (higher first)."""
        liked = [self.catalog.get(i) for i in state.liked if i in self.catalog]
        liked += self.outside_films(state)
        if not liked:
            return []
        if self._facts is None:
            self._facts = ContentFacts(list(self.catalog.items.values()), self.catalog.schema)
        score = self._facts.overlap(liked)
        fit = self.fitting(state)
        rows = [r for r in np.flatnonzero(score > 0) if self._facts.ids[r] in fit]
        items = self.catalog.items
        top = sorted(((float(score[r]), items[self._facts.ids[r]].popularity, self._facts.ids[r])
                      for r in rows), reverse=True)[:n]
        return [(i, s) for s, _, i in top]

    def popular(self, state: DialogueState, n: int) -> list[tuple[int, float]]:
        fits = [self.catalog.get(i) for i in self.fitting(state)]
        fits.sort(key=lambda it: (-it.popularity, it.id))
        return [(it.id, float(it.popularity)) for it in fits[:n]]

    def by_fit(self, state: DialogueState, n: int) -> list[tuple[int, float]]:
        """What fits, the films most of whose genres are asked for first (``genre_fit``)."""
        fit = {i: genre_fit(self.catalog.get(i), state, self.catalog.schema.roles)
               for i in self.fitting(state)}
        order = sorted(fit, key=lambda i: (-round(fit[i], 2), -self.catalog.get(i).popularity, i))
        return [(i, fit[i]) for i in order[:n]]

    def quality(self, state: DialogueState, n: int) -> list[tuple[int, float]]:
        """The best-rated items that fit (``Catalog.quality``), for "surprise me"."""
        quality = self.catalog.quality
        fits = [self.catalog.get(i) for i in self.fitting(state)]
        fits.sort(key=lambda it: (-quality[it.id], it.id))
        return [(it.id, quality[it.id]) for it in fits[:n]]

    def lists(self, state: DialogueState, pool: int = POOL,
              history: Sequence[int] = ()) -> dict[str, list[tuple[int, float]]]:
        """Each source's best ``pool`` items that fit, as ``[(item_id, raw score)]``.

        ``history``: a known user's interactions in time order (the API's user id), read
        by the sequence model and co-watching beside the liked titles."""
        lists = {"semantic": self.semantic(state, pool),
                 "cowatch": self.cowatched(state, pool, history),
                 "sequential": self.sequential(state, pool, history),
                 "transition": self.transition(state, pool, history),
                 "content": self.content(state, pool), "popular": self.popular(state, pool)}
        if state.well_liked or state.lesser_known:  # a hidden gem is a well-liked one
            lists["quality"] = self.quality(state, pool)
        if state.disliked:
            avoid = state.with_changes(liked=state.disliked, disliked=(), outside=())
            seen: set[int] = set()
            lists["avoid"] = [(i, v) for i, v in self.content(avoid, pool) + self.cowatched(avoid, pool)
                              if not (i in seen or seen.add(i))]
        return {k: v for k, v in lists.items() if v}

    def rrf(self, state: DialogueState, lists: dict, n: int) -> list[Candidate]:
        """The hand-tuned fusion of ``lists``: weighted reciprocal rank.

        Popularity gets a third of the weight: it breaks ties towards items many people
        liked without letting the head crowd out the rest."""
        weights = SOURCE_WEIGHTS
        if state.tail_boost == 0.0:  # "popular comedies": the familiar counts fully
            weights = {**SOURCE_WEIGHTS, "popular": POPULAR_ASKED}
        fused = rrf_fuse(lists, n + len(lists.get("avoid", ())), weights)
        # Only items some positive source proposed are candidates.
        return [c for c in fused if set(c.sources) - {"avoid"}][:n]

    def retrieve(self, state: DialogueState, n: int,
                 history: Sequence[int] = ()) -> list[Candidate]:
        """The best ``n`` of every source's lists (each ``POOL`` long, or ``n``), fused by
        the learned fusion when there is one and the user did not ask for films by their
        standing (``asks_for_standing``), else by weighted reciprocal rank."""
        lists = self.lists(state, max(n, POOL), history)
        if self.fusion is None or asks_for_standing(state):
            cands = self.rrf(state, lists, n)
        else:
            cands = self.learned(state, lists, n, history)
        places = {i: k for k, (i, _) in enumerate(lists.get("sequential", ()))}
        return [replace(c, sequential_rank=places.get(c.item_id)) for c in cands] \
            if places else cands

    def learned(self, state: DialogueState, lists: dict, n: int,
                history: Sequence[int] = ()) -> list[Candidate]:
        """The learned fusion's best ``n`` of the union of ``lists``."""
        from agent.rank.fusion import candidate_rows

        rrf = {c.item_id: c.score for c in self.rrf(state, lists, 10 * POOL)}
        evidence = len(set(history) | set(state.liked))
        fusion = self.fusion.for_evidence(evidence)
        models = None if fusion.blanks_models else \
            (lambda ids: self.model_scores(state, ids, history))
        ids, X = candidate_rows(lists, self.catalog, evidence, rrf, models=models)
        proposed: dict[int, set[str]] = {}
        for source, lst in lists.items():
            for j, _ in lst:
                proposed.setdefault(j, set()).add(source)
        raw = {s: dict(lst) for s, lst in lists.items()}
        return [Candidate(i, score, tuple(sorted(proposed[i])), raw.get("semantic", {}).get(i),
                          raw.get("cowatch", {}).get(i))
                for i, score in fusion.rank(ids, X)[:n]]
