"""``tailor eval --tail-choice``: which ``tail_boost`` should the agent use?

The rule, applied to the fusion's own training cases and never to test users: the least
boost at which the re-ranked top 10 reach the sequence model's tail share and coverage
on the same cases. Each case is ranked by a fusion fitted on the other half of the users
(out of fold, as serving would rank an unseen user); the reference is the shadow
sequence model's own top 10 (its candidate list is its best 50 that the user has not
watched). Tail and coverage are those of the catalog the cases' sources were fitted on.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from agent.rank.fusion import Example, FusionConfig, feature_names, train_fusion

BOOSTS = tuple(round(0.05 * k, 2) for k in range(21))  # 0, 0.05, ..., 1
DEPTH = 50  # candidates the re-ranker reorders, as TwoStage's rerank_depth
K = 10


def out_of_fold(examples: Sequence[Example], cfg: FusionConfig | None = None, seed: int = 0,
                log=print) -> list[list[tuple[int, float]]]:
    """Each example's candidates ranked by a fusion fitted on the other half of the users."""
    users = sorted({e.user for e in examples})
    half = set(np.random.default_rng(seed + 1).permutation(users)[:len(users) // 2].tolist())
    folds = [[e for e in examples if e.user in half], [e for e in examples if e.user not in half]]
    fitted = [train_fusion(fold, feature_names(), cfg, log) for fold in folds]
    return [(fitted[0] if e.user not in half else fitted[1]).rank(e.ids, e.X) for e in examples]


def sequence_top(example: Example, k: int = K) -> list[int]:
    """The sequence model's own first ``k`` among an example's candidates."""
    ranks = example.X[:, feature_names().index("sequential_rank")]
    rows = [r for r in np.argsort(ranks, kind="stable") if ranks[r] < k]
    return [example.ids[r] for r in rows]


def list_metrics(lists: Sequence[Sequence[int]], targets: Sequence[int], catalog) -> dict:
    """NDCG@10, tail share@10 and coverage@10 of top-10 ``lists`` on ``catalog``.

    >>> class C:
    ...     items = {1: 0, 2: 0, 3: 0, 4: 0}
    ...     def is_tail(self, i): return i > 2
    >>> m = list_metrics([[1, 3], [3, 1]], [3, 2], C())
    >>> round(m["ndcg@10"], 3), m["tail_share@10"], m["coverage@10"]
    (0.315, 0.1, 0.5)
    """
    ndcg = [1 / math.log2(lst[:K].index(t) + 2) if t in lst[:K] else 0.0
            for lst, t in zip(lists, targets)]
    tail = [sum(catalog.is_tail(i) for i in lst[:K]) / K for lst in lists]
    shown = {i for lst in lists for i in lst[:K]}
    return {"ndcg@10": float(np.mean(ndcg)), "tail_share@10": float(np.mean(tail)),
            "coverage@10": len(shown) / max(1, len(catalog.items))}


def least_boost(curve: dict[float, dict], reference: dict) -> float | None:
    """The least boost whose tail share and coverage both reach ``reference``'s.

    >>> ref = {"tail_share@10": 0.2, "coverage@10": 0.5}
    >>> curve = {0.0: {"tail_share@10": 0.1, "coverage@10": 0.6},
    ...          0.1: {"tail_share@10": 0.2, "coverage@10": 0.4},
    ...          0.2: {"tail_share@10": 0.3, "coverage@10": 0.5},
    ...          0.3: {"tail_share@10": 0.4, "coverage@10": 0.6}}
    >>> least_boost(curve, ref), least_boost({0.0: curve[0.0]}, ref)
    (0.2, None)
    """
    return next((b for b in sorted(curve)
                 if curve[b]["tail_share@10"] >= reference["tail_share@10"]
                 and curve[b]["coverage@10"] >= reference["coverage@10"]), None)


def reranked(ranked: list[tuple[int, float]], reranker, boost: float,
             floor_of: Example | None = None) -> list[int]:
    """The first ``K`` after the tail re-ranker at ``boost`` and, with ``floor_of`` (the
    case's example), the tail floor (as ``TwoStage.rank_pool``)."""
    from eval.systems import _Entry
    from eval.two_stage import floored

    order = [i for i, _ in ranked]
    if boost > 0:
        top = [_Entry(i, v) for i, v in ranked[:DEPTH]]
        order = [e.item_id for e in reranker.rerank(top, tail_boost=boost)] + order[DEPTH:]
    if floor_of is not None:
        order = floored(order, floor_of, reranker.catalog, K)
    return order[:K]


def choose_tail_boost(examples: Sequence[Example], catalog, diversity: float = 0.0,
                      boosts: Sequence[float] = BOOSTS, cfg: FusionConfig | None = None,
                      log=print, floor: bool = False) -> dict:
    """The curve over ``boosts`` on ``examples`` (out of fold), the sequence model's
    reference point, and the rule's choice (None when no boost reaches both);
    ``floor``: each list also keeps the tail floor, as the system ranks."""
    from agent.rank.rerank import TailDiversityReranker

    t0 = time.perf_counter()
    ranked = out_of_fold(examples, cfg, log=log)
    targets = [e.target for e in examples]
    reference = list_metrics([sequence_top(e) for e in examples], targets, catalog)
    reranker = TailDiversityReranker(catalog, 0.0, diversity)
    curve = {b: list_metrics([reranked(r, reranker, b, e if floor else None)
                              for r, e in zip(ranked, examples)], targets, catalog)
             for b in boosts}
    chosen = least_boost(curve, reference)
    log(f"tail choice: the sequence model's tail share {reference['tail_share@10']:.3f}, "
        f"coverage {reference['coverage@10']:.3f} on {len(examples)} training cases; least "
        f"boost reaching both: {chosen}"
        + (f" (NDCG@10 {curve[chosen]['ndcg@10']:.4f} against the fusion alone's "
           f"{curve[min(curve)]['ndcg@10']:.4f})" if chosen is not None else ""))
    return {"reference": reference, "curve": {f"{b:g}": v for b, v in curve.items()},
            "chosen": chosen, "cases": len(examples), "tail_floor": floor,
            "seconds": time.perf_counter() - t0}


def run_tail_choice(system, split, diversity: float = 0.0, log=print) -> dict:
    """``choose_tail_boost`` over a trained ``tailor`` system's training cases, on the
    catalog their sources were fitted on (each history without its last items)."""
    from agent.data.catalog import catalog_from_histories
    from agent.rank.shadow import HELD_OUT, shadow_split

    sequences = {c.user: [*c.history, c.target] for c in split.valid}
    truncated, _ = shadow_split(sequences, HELD_OUT)
    before = catalog_from_histories(split.train_catalog, truncated,
                                    f"fusion training: last {HELD_OUT} items held out")
    return choose_tail_boost(system.train_examples, before, diversity, log=log,
                             floor=getattr(system, "tail_floor", False))
