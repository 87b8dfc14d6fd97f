"""Retrieval latency on the real catalog and on a synthetic 100,000-item one, and the
time to build an index.

The synthetic catalog has the real index's metadata (year, popularity, head/tail,
one flag per genre, from ``agent.retrieve.index.item_metadata``), random unit vectors of the
embedder's dimension instead of embedded text, and interactions drawn by a Zipf
popularity, so the agent's own ``HybridRetriever`` runs on it unchanged: Chroma
query with ``where`` filters, co-watching, content overlap and popularity.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from bench.stats import scaled, summary

SYNTHETIC_ITEMS = 100_000
CHROMA_BATCH = 5000  # under Chroma's maximum batch (5,461)


def varied_states(catalog, dialogue_states: list, n: int, seed: int = 0) -> list:
    """``dialogue_states`` plus states built from users' last two items, with a
    decade, a genre, an excluded genre or a disliked item in turn, until ``n``."""
    from agent.types import DialogueState

    rng = np.random.default_rng(seed)
    states = list(dialogue_states)[:n]
    users = rng.permutation(np.unique(catalog.user))
    k = 0
    while len(states) < n and k < len(users):
        mine = np.flatnonzero(catalog.user == users[k])
        items = [int(i) for i in catalog.item[mine[np.argsort(catalog.timestamp[mine])]]]
        states.append(vary(DialogueState(liked=tuple(items[-2:])), k, items, catalog, rng))
        k += 1
    return states


def vary(state, k: int, history: list[int], catalog, rng):
    """The ``k``-th variation of a state: none, a decade, a genre, an excluded genre, a dislike."""
    liked = [catalog.get(i) for i in state.liked if i in catalog]
    kind = k % 5
    if kind == 1:
        d = int(rng.choice([1950, 1960, 1970, 1980, 1990]))
        return state.with_changes(year_min=d, year_max=d + 9)
    if kind == 2 and liked and liked[0].values("genres"):
        return state.with_changes(genres=(liked[0].values("genres")[0],))
    if kind == 3:
        return state.with_changes(excluded_genres=("Horror",))
    if kind == 4 and len(history) > 2:
        return state.with_changes(disliked=(history[0],))
    return state


def time_retrieval(retriever, states: list, n_candidates: int) -> dict:
    """Milliseconds per ``retrieve`` call over ``states`` (after one warm-up call)."""
    retriever.retrieve(states[0], n_candidates)
    seconds = []
    for s in states:
        t0 = time.perf_counter()
        retriever.retrieve(s, n_candidates)
        seconds.append(time.perf_counter() - t0)
    return scaled(summary(seconds), 1000.0)


def time_semantic_query(collection, vectors: np.ndarray, wheres: list, n: int) -> dict:
    """Milliseconds per bare Chroma query (vector + ``where``), the semantic part alone."""
    seconds = []
    for v, w in zip(vectors, wheres):
        t0 = time.perf_counter()
        collection.query(query_embeddings=[v], n_results=n, where=w,
                         include=["distances", "metadatas"])
        seconds.append(time.perf_counter() - t0)
    return scaled(summary(seconds), 1000.0)


def synthetic_catalog(n_items: int, n_users: int, per_user: int, seed: int = 0):
    """A ``Catalog`` of ``n_items`` invented films and Zipf-popular interactions."""
    from agent.data.catalog import Catalog
    from agent.domain.movielens.loaders import ML_GENRES
    from agent.domain.movielens.film import film

    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, n_items + 1) ** 0.9
    weight /= weight.sum()
    item = rng.choice(n_items, size=n_users * per_user, p=weight) + 1
    user = np.repeat(np.arange(1, n_users + 1), per_user)
    counts = np.bincount(item, minlength=n_items + 1)
    directors = [f"Director {k}" for k in range(n_items // 20)]
    actors = [f"Actor {k}" for k in range(n_items // 5)]
    genres = list(ML_GENRES)
    items = []
    for i in range(1, n_items + 1):
        g = rng.choice(len(genres), size=int(rng.integers(1, 4)), replace=False)
        items.append(film(i, f"Synthetic film {i}", int(rng.integers(1920, 2021)),
                          tuple(genres[j] for j in sorted(g)),
                          (directors[int(rng.integers(len(directors)))],),
                          tuple(actors[int(j)] for j in rng.integers(len(actors), size=3)),
                          popularity=int(counts[i])))
    head = set((np.argsort(-counts[1:], kind="stable")[: n_items // 5] + 1).tolist())
    ts = np.arange(len(item), dtype=np.int64)
    return Catalog(items, {"dataset": "synthetic"}, user.astype(np.int32),
                   item.astype(np.int32), ts, head)


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build_synthetic_collection(client, catalog, dim: int, seed: int = 0):
    """A cosine HNSW collection of the catalog's items: random vectors, real metadata."""
    from agent.retrieve.index import item_metadata

    col = client.create_collection("tailor-synthetic-items", metadata={"hnsw:space": "cosine"},
                                   embedding_function=None)
    ids = sorted(catalog.items)
    vectors = random_unit_vectors(len(ids), dim, seed)
    for start in range(0, len(ids), CHROMA_BATCH):
        chunk = ids[start:start + CHROMA_BATCH]
        col.add(ids=[str(i) for i in chunk], embeddings=vectors[start:start + len(chunk)],
                metadatas=[item_metadata(catalog.get(i), i in catalog.head, catalog.schema,
                                         catalog.facet_values) for i in chunk])
    return col


def measure_synthetic(embedder, workdir, n_items: int, n_queries: int, n_candidates: int,
                      log=print) -> dict:
    """Build the synthetic catalog and collection under ``workdir``, then time queries."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from agent.retrieve.sources import HybridRetriever
    from agent.understand.state import chroma_where

    t0 = time.perf_counter()
    catalog = synthetic_catalog(n_items, n_users=max(1000, n_items // 10), per_user=20)
    _ = catalog.cowatch  # built once on first use; here, outside the query timings
    catalog_s = time.perf_counter() - t0
    client = chromadb.PersistentClient(path=str(workdir),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    dim = int(embedder.encode(["dimension probe"]).shape[1])
    t0 = time.perf_counter()
    col = build_synthetic_collection(client, catalog, dim)
    build_s = time.perf_counter() - t0
    log(f"  synthetic catalog: {n_items} items, index built in {build_s:.1f} s")
    states = varied_states(catalog, [], n_queries, seed=1)
    wheres = [chroma_where(s) for s in states]
    semantic = time_semantic_query(col, random_unit_vectors(len(states), dim, 2), wheres,
                                   max(50, n_candidates))
    hybrid = time_retrieval(HybridRetriever(col, embedder, catalog), states, n_candidates)
    return {"items": n_items, "dim": dim, "interactions": int(len(catalog.item)),
            "catalog_and_cowatch_s": catalog_s, "index_build_s": build_s,
            "index_build_note": "random vectors: no embedding time; Chroma insert + HNSW only",
            "chroma_query_ms": semantic, "retrieve_ms": hybrid,
            "retrieval_p50_ms": hybrid["p50"], "retrieval_p95_ms": hybrid["p95"]}


def measure_index_build(catalog, embedder, dataset: str, workdir, max_items: int | None) -> dict:
    """Time ``agent.retrieve.index.build_index`` into a fresh store under ``workdir`` (the data
    home's index is never touched), on the first ``max_items`` items if given. The
    embedder is already loaded, so this is embedding the documents plus inserting."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from agent.retrieve.index import build_index

    if max_items is not None and max_items < len(catalog.items):
        ids = sorted(catalog.items)[:max_items]
        catalog = SimpleNamespace(items={i: catalog.items[i] for i in ids}, head=catalog.head,
                                  hidden=catalog.hidden, schema=catalog.schema,
                                  facet_values=catalog.facet_values)
    client = chromadb.PersistentClient(path=str(workdir),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    t0 = time.perf_counter()
    info = build_index(client, catalog, embedder, dataset, log=lambda m: None)
    seconds = time.perf_counter() - t0
    return {"items": info["items"], "seconds": seconds,
            "items_per_s": info["items"] / seconds if seconds else None}
