"""Statistics of an interaction log: popularity, the head/tail split, co-occurrence and
per-user histories. Domain-free: any catalog's interactions."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def popularity_counts(item_ids: np.ndarray, all_items: list[int]) -> dict[int, int]:
    """Number of interactions per item (0 for items nobody rated)."""
    ids, counts = np.unique(item_ids, return_counts=True)
    out = dict.fromkeys(all_items, 0)
    out.update(zip(ids.tolist(), counts.tolist()))
    return out


def head_tail_split(counts: dict[int, int], head_share: float = 0.8) -> tuple[set[int], int]:
    """The head is the fewest most-popular items that make ``head_share`` of interactions.

    Returns ``(head item ids, threshold)``, the threshold being the smallest
    interaction count inside the head.

    >>> head, threshold = head_tail_split({1: 50, 2: 30, 3: 10, 4: 10})
    >>> sorted(head), threshold
    ([1, 2], 30)
    """
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    head, running, threshold = set(), 0, 0
    for item_id, c in ranked:
        if running >= head_share * total:
            break
        head.add(item_id)
        running += c
        threshold = c
    return head, threshold


def cowatch_matrix(user: np.ndarray, item: np.ndarray, n_items: int):
    """Item-item cosine similarity of binary interaction columns (sparse, CSR)."""
    from scipy import sparse

    users, uidx = np.unique(user, return_inverse=True)
    x = sparse.csr_matrix((np.ones(len(item), dtype=np.float32), (uidx, item)),
                          shape=(len(users), n_items))
    x.data[:] = 1.0  # repeated ratings count once
    co = (x.T @ x).tocsr()
    norms = np.sqrt(np.asarray(co.diagonal(), dtype=np.float32))
    norms[norms == 0] = 1.0
    inv = sparse.diags(1.0 / norms)
    sim = (inv @ co @ inv).tocsr()
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    return sim


TRANSITION_WINDOW = 5  # j "came next" after i when a user watched it within 5 items of i


def transition_matrix(sequences, n_items: int, window: int = TRANSITION_WINDOW):
    """What came next: row ``i`` sums, over every history, 1/d for the item ``d <= window``
    places after ``i``; each row is then scaled to sum to 1 (scipy CSR). Unlike co-watching
    (anywhere in the same history), it keeps the order and the distance.

    >>> m = transition_matrix([[1, 2, 3], [1, 2]], 4, window=2).toarray()
    >>> [round(float(v), 3) for v in m[1]], [round(float(v), 3) for v in m[2]]
    ([0.0, 0.0, 0.8, 0.2], [0.0, 0.0, 0.0, 1.0])
    """
    from scipy import sparse

    rows, cols, vals = [], [], []
    for seq in sequences:
        s = np.asarray(seq, dtype=np.int64)
        for d in range(1, min(window, len(s) - 1) + 1):
            rows.append(s[:-d])
            cols.append(s[d:])
            vals.append(np.full(len(s) - d, 1.0 / d, dtype=np.float32))
    if not rows:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    m = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n_items, n_items))  # repeated pairs are summed
    out = np.asarray(m.sum(axis=1)).ravel()
    out[out == 0] = 1.0
    return (sparse.diags(1.0 / out) @ m).tocsr()


def first_watches(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray
                  ) -> dict[int, list[int]]:
    """Each user's items in time order, each item once (its first watch)."""
    return {u: list(dict.fromkeys(items))
            for u, items in group_by_user(user, item, timestamp).items()}


def group_by_user(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray) -> dict[int, list[int]]:
    """Each user's items in time order (ties broken by item id)."""
    order = np.lexsort((item, timestamp, user))
    out: dict[int, list[int]] = defaultdict(list)
    for u, i in zip(user[order].tolist(), item[order].tolist()):
        out[u].append(i)
    return dict(out)


DAY = 86_400  # seconds: interaction times are Unix seconds


class RecentCounts:
    """How often each item was interacted with in a window of time, against everything
    in that window: what was watched (bought) recently, as of any moment ``when``.

    Counts only what happened before ``when``, so a case's columns never see its own
    future (nor anyone's after it).

    >>> rc = RecentCounts(np.array([1, 1, 2, 1]), np.array([0, 5, 6, 40]) * DAY)
    >>> rc.shares([1, 2, 3], when=7 * DAY, days=(7, 30)).round(2).tolist()
    [[0.67, 0.67], [0.33, 0.33], [0.0, 0.0]]
    >>> rc.shares([1], when=DAY, days=(7,)).tolist()  # nothing in the window but item 1
    [[1.0]]
    >>> rc.shares([1], when=0, days=(7,)).tolist()  # nothing before: unknown
    [[nan]]
    """

    def __init__(self, item: np.ndarray, times: np.ndarray):
        t = np.asarray(times, dtype=np.int64)
        self.t0 = int(t.min()) if len(t) else 0
        self.span = int(t.max()) - self.t0 + 1 if len(t) else 1
        self.keys = np.sort(np.asarray(item, dtype=np.int64) * self.span + (t - self.t0))
        self.times = np.sort(t)
        self.end = int(t.max()) + 1 if len(t) else 0  # just after the last interaction

    def shares(self, ids, when: int | None = None, days=(7, 30, 180)) -> np.ndarray:
        """``[len(ids), len(days)]``: each item's share of the interactions in the ``d``
        days before ``when`` (default: just after the last one); NaN for a window
        with none."""
        when = self.end if when is None else int(when)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.full((len(ids), len(days)), np.nan)
        hi = min(max(when - self.t0, 0), self.span)
        for k, d in enumerate(days):
            lo = min(max(when - d * DAY - self.t0, 0), self.span)
            total = (np.searchsorted(self.times, when) -
                     np.searchsorted(self.times, when - d * DAY))
            if total:
                n = (np.searchsorted(self.keys, ids * self.span + hi) -
                     np.searchsorted(self.keys, ids * self.span + lo))
                out[:, k] = n / total
        return out
