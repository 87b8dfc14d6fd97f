"""What each part of the fusion adds: drop one candidate source (its candidates, its
columns, its share of the RRF feature, and for the sequence model its whole-catalog
columns too) or blank one feature, retrain the fusion on
the same training cases, and score the same test users (``tailor eval --ablation``).

The RRF feature is recomputed from the remaining sources' rank columns with the
retriever's weights, so a dropped source leaves no trace in it. That is exact for
the known-user cases the fusion learns on (no "popular" request changes a weight).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from agent.rank.fusion import (MODEL_FEATURES, RECENT_FEATURES, SOURCES, Example, FusionConfig,
                               feature_names, train_fusion)

ABLATED_SOURCES = ("sequential", "transition", "cowatch", "semantic", "content", "popular")
ABLATED_FEATURES = ("rrf", "log_popularity", "history_len", "year", "ease",
                    "popularity_vs_history", "recent_30d")
# Features dropped together: EASE's recent scores with its whole-history one, the
# history's popularity with the candidate's popularity against it, and the three windows
# of recent popularity.
FEATURE_GROUPS = {"ease": ("ease", "ease_last1", "ease_last5", "ease_last20"),
                  "popularity_vs_history": ("popularity_vs_history", "history_popularity"),
                  "recent_30d": RECENT_FEATURES}


def drop_source(e: Example, source: str, features: Sequence[str] | None = None) -> Example:
    """``e`` as if ``source`` had proposed nothing (nor scored any candidate: its
    ``MODEL_FEATURES`` columns are blanked too).

    >>> F = feature_names()
    >>> X = np.full((2, len(F)), np.nan, dtype=np.float32)
    >>> X[0, F.index("cowatch_rank")] = X[1, F.index("semantic_rank")] = 0
    >>> X[1, F.index("cowatch_rank")] = 1
    >>> d = drop_source(Example([7, 8], X, 8), "cowatch")
    >>> d.ids, float(d.X[0, F.index("n_sources")]), round(float(d.X[0, F.index("rrf")]), 5)
    ([8], 1.0, 0.01639)
    """
    from agent.retrieve.sources import RRF_K, SOURCE_WEIGHTS

    F = list(features or feature_names())
    X = e.X.copy()
    X[:, F.index(f"{source}_rank")] = np.nan
    X[:, F.index(f"{source}_score")] = np.nan
    for name in MODEL_FEATURES:
        if name.startswith(f"{source}_"):
            X[:, F.index(name)] = np.nan
    proposed, rrf, n = np.zeros(len(X), bool), np.zeros(len(X)), np.zeros(len(X))
    for s in SOURCES:
        rank = X[:, F.index(f"{s}_rank")]
        ok = ~np.isnan(rank)
        rrf[ok] += SOURCE_WEIGHTS.get(s, 1.0) / (RRF_K + rank[ok] + 1)
        if s != "avoid":
            proposed |= ok
            n += ok
    X[:, F.index("rrf")] = rrf
    X[:, F.index("n_sources")] = n
    keep = np.flatnonzero(proposed)
    return Example([e.ids[i] for i in keep], X[keep], e.target, e.user)


def drop_feature(e: Example, feature: str, features: Sequence[str] | None = None) -> Example:
    """``e`` with ``feature`` (and the rest of its ``FEATURE_GROUPS`` group) missing."""
    F, X = list(features or feature_names()), e.X.copy()
    X[:, [F.index(f) for f in FEATURE_GROUPS.get(feature, (feature,))]] = np.nan
    return Example(e.ids, X, e.target, e.user)


def ndcg10(fusion, examples: Sequence[Example], seen: Sequence[set[int]]) -> float:
    """NDCG@10 of the fusion's order (already-seen items skipped); a target outside the
    candidates scores 0, so this is the full-ranking figure."""
    total = 0.0
    for e, s in zip(examples, seen):
        top = [i for i, _ in fusion.rank(e.ids, e.X) if i not in s][:10]
        if e.target in top:
            total += 1.0 / math.log2(top.index(e.target) + 2)
    return total / max(1, len(examples))


def ablate(train: Sequence[Example], test: Sequence[Example], seen: Sequence[set[int]],
           cfg: FusionConfig | None = None, log=print) -> dict[str, dict[str, float]]:
    """``{"all" | "-<source>" | "-<feature>": {"ndcg@10", "recall"}}`` on ``test``."""
    variants = [("all", None, None)]
    variants += [(f"-{s}", drop_source, s) for s in ABLATED_SOURCES]
    variants += [(f"-{f}", drop_feature, f) for f in ABLATED_FEATURES]
    out = {}
    for name, drop, what in variants:
        tr = list(train) if drop is None else [drop(e, what) for e in train]
        te = list(test) if drop is None else [drop(e, what) for e in test]
        fusion = train_fusion(tr, feature_names(), cfg, log=lambda m: None)
        out[name] = {"ndcg@10": ndcg10(fusion, te, seen),
                     "recall": float(np.mean([e.target in e.ids for e in te])) if te else 0.0}
        log(f"ablation {name}: ndcg@10 {out[name]['ndcg@10']:.4f}, "
            f"recall of the candidates {out[name]['recall']:.3f}")
    return out
