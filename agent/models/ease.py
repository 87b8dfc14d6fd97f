"""EASE: a linear item-item model fitted in closed form (Steck, WWW 2019).

It learns, for every item, the weights of every other item that best reconstruct who
interacted with it: ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` over the binary
user-item matrix ``X``, diagonal zero. A history's scores are the sum of its items'
rows. Unlike co-watching (cosine of two columns), each weight is fitted with every other
item in view, so it discounts an item that co-occurs with everything; unlike the
sequence model it ignores order. The fusion reads its score as a feature
(``agent.rank.fusion``): a second, differently made opinion on each candidate.

The inverse is dense: ``n_items²`` floats. A catalog of more than ``MAX_ITEMS`` items
gets no EASE (the feature stays missing, which the fusion handles).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

LAMBDA = 500.0  # the L2 weight; measured on ML-100K and ML-1M (README, "Two stages")
RECENT = (1, 5, 20)  # the fusion also reads the score of the history's last 1, 5, 20 items
MAX_ITEMS = 12_000  # a dense 12k x 12k float32 weight matrix is ~0.6 GB


class EASE:
    """Fitted item-item weights (float32, ``n x n``) over item ids ``0..n-1``."""

    def __init__(self, weights: np.ndarray):
        self.weights = weights

    @property
    def n_items(self) -> int:
        return self.weights.shape[0]

    def scores(self, history: Sequence[int]) -> np.ndarray:
        """Every item's score for ``history`` (ids outside the fitted range are ignored)."""
        known = [i for i in dict.fromkeys(history) if 0 <= i < self.n_items]
        if not known:
            return np.zeros(self.n_items, dtype=np.float32)
        return self.weights[known].sum(axis=0)

    def columns(self, history: Sequence[int], ids: np.ndarray) -> dict[str, np.ndarray]:
        """The fusion's EASE columns for candidates ``ids`` (NaN past the fitted range):
        the whole history's score, ``ease``, and its last ``k`` items' for each ``k`` in
        ``RECENT``, ``ease_last<k>``. Tastes drift: on ML-1M's cached fusion cases the
        recent scores lifted the fusion's NDCG@10 from 0.1997 to 0.2018 together with
        the popularity columns (README, "Two stages", run L).

        >>> cols = EASE(np.eye(3, dtype=np.float32)).columns([0, 2], np.array([0, 2, 7]))
        >>> cols["ease"].tolist(), cols["ease_last1"].tolist()
        ([1.0, 1.0, nan], [0.0, 1.0, nan])
        """
        ids, history = np.asarray(ids), list(history)
        ok = ids < self.n_items
        out, done = {}, {}
        for name, part in [("ease", history)] + [(f"ease_last{k}", history[-k:]) for k in RECENT]:
            if len(part) not in done:  # a short history's last 20 are the whole of it
                col = np.full(len(ids), np.nan)
                col[ok] = self.scores(part)[ids[ok]]
                done[len(part)] = col
            out[name] = done[len(part)]
        return out


def fit_ease(user: np.ndarray, item: np.ndarray, n_items: int, lam: float = LAMBDA,
             max_items: int = MAX_ITEMS) -> EASE | None:
    """EASE over the ``(user, item)`` interactions (repeats count once), or None when
    ``n_items`` exceeds ``max_items``.

    >>> m = fit_ease(np.array([0, 0, 1, 1, 2]), np.array([1, 2, 1, 2, 3]), 4, lam=1.0)
    >>> s = m.scores([1])
    >>> bool(s[2] > 0), float(s[1]), float(s[3])
    (True, 0.0, 0.0)
    """
    if n_items > max_items:
        return None
    from scipy import sparse

    users, uidx = np.unique(np.asarray(user), return_inverse=True)
    X = sparse.csr_matrix((np.ones(len(uidx), dtype=np.float64), (uidx, np.asarray(item))),
                          shape=(len(users), n_items))
    X.data[:] = 1.0  # repeats count once
    gram = (X.T @ X).toarray()
    gram[np.diag_indices(n_items)] += lam
    P = np.linalg.inv(gram)
    B = P / -np.diag(P)
    B[np.diag_indices(n_items)] = 0.0
    return EASE(B.astype(np.float32))
