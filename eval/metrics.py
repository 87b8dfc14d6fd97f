"""Ranking, long-tail, diversity and validity metrics as pure functions.

Per-list metrics take one ranked list and return a float; aggregate metrics
take every user's list. Nothing here rounds: round only when printing.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np


def hit_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """1.0 if any relevant item is in the top ``k``.

    >>> hit_at_k([5, 3, 9], {3}, 2), hit_at_k([5, 3, 9], {9}, 2)
    (1.0, 0.0)
    """
    return float(any(i in relevant for i in ranked[:k]))


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Share of the relevant items found in the top ``k``.

    >>> recall_at_k([1, 2, 3, 4], {2, 4, 7}, 3)
    0.3333333333333333
    """
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Binary-relevance NDCG@k.

    >>> ndcg_at_k([7, 3], {3}, 10)  # one target at rank 2: 1 / log2(3)
    0.6309297535714575
    >>> ndcg_at_k([3, 7], {3}, 10)
    1.0
    """
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def mrr_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Reciprocal rank of the first relevant item within the top ``k`` (0 if none).

    >>> mrr_at_k([4, 5, 6], {6}, 3), mrr_at_k([4, 5, 6], {6}, 2)
    (0.3333333333333333, 0.0)
    """
    for r, i in enumerate(ranked[:k]):
        if i in relevant:
            return 1.0 / (r + 1)
    return 0.0


def tail_share_at_k(ranked: Sequence[int], tail: set[int], k: int) -> float:
    """Share of the top ``k`` that are long-tail items (APLT when averaged over users).

    >>> tail_share_at_k([1, 2, 3, 4], {2, 4}, 4)
    0.5
    """
    top = ranked[:k]
    return sum(i in tail for i in top) / len(top) if top else 0.0


def novelty_at_k(ranked: Sequence[int], popularity: dict[int, int], n_users: int, k: int) -> float:
    """Mean self-information ``-log2(pop / n_users)`` of the top ``k`` (higher = less known).

    >>> novelty_at_k([1, 2], {1: 50, 2: 25}, 100, 2)
    1.5
    """
    top = ranked[:k]
    if not top:
        return 0.0
    return float(np.mean([-math.log2(max(popularity.get(i, 0), 1) / n_users) for i in top]))


def ild_at_k(ranked: Sequence[int], vectors: dict[int, np.ndarray], k: int) -> float:
    """Intra-list diversity: mean pairwise cosine distance of the top ``k`` item vectors.

    >>> v = {1: np.array([1.0, 0.0]), 2: np.array([0.0, 1.0]), 3: np.array([1.0, 0.0])}
    >>> ild_at_k([1, 2, 3], v, 3)  # pairs: 1-2 distance 1, 1-3 distance 0, 2-3 distance 1
    0.6666666666666666
    """
    top = [i for i in ranked[:k] if i in vectors]
    if len(top) < 2:
        return 0.0
    m = np.stack([vectors[i] / (np.linalg.norm(vectors[i]) or 1.0) for i in top])
    sims = m @ m.T
    n = len(top)
    return float((n * n - sims.sum()) / (n * (n - 1)))  # diagonal sims are 1


def oov_rate(ranked: Sequence[int], catalog_ids: set[int]) -> float:
    """Share of recommended ids that are not catalog items (hallucinations).

    >>> oov_rate([1, 2, 99], {1, 2, 3})
    0.3333333333333333
    """
    return sum(i not in catalog_ids for i in ranked) / len(ranked) if ranked else 0.0


def history_repeat_rate(ranked: Sequence[int], history: set[int]) -> float:
    """Share of recommended items the user already interacted with.

    >>> history_repeat_rate([1, 2, 3, 4], {2})
    0.25
    """
    return sum(i in history for i in ranked) / len(ranked) if ranked else 0.0


def duplicate_rate(ranked: Sequence[int]) -> float:
    """Share of list positions that repeat an earlier item.

    >>> duplicate_rate([1, 2, 1, 1])
    0.5
    """
    return (len(ranked) - len(set(ranked))) / len(ranked) if ranked else 0.0


def coverage_at_k(lists: Iterable[Sequence[int]], n_items: int, k: int) -> float:
    """Share of the catalog that appears in at least one user's top ``k``.

    >>> coverage_at_k([[1, 2], [2, 3]], 10, 2)
    0.3
    """
    seen = set()
    for ranked in lists:
        seen.update(ranked[:k])
    return len(seen) / n_items if n_items else 0.0


def gini_at_k(lists: Iterable[Sequence[int]], item_ids: Sequence[int], k: int) -> float:
    """Gini coefficient of how often each catalog item is recommended in the top ``k``
    (0 = every item equally often, towards 1 = a few items take all slots).

    >>> gini_at_k([[1], [2]], [1, 2], 1)
    0.0
    >>> round(gini_at_k([[1], [1]], [1, 2, 3, 4], 1), 3)
    0.75
    """
    counts = Counter()
    for ranked in lists:
        counts.update(ranked[:k])
    x = np.sort(np.array([counts.get(i, 0) for i in item_ids], dtype=float))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum.sum() / cum[-1])) / n)
