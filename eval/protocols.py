"""Evaluation protocol: leave-one-out by time, full ranking and sampled 1+99.

Per user, interactions in time order: the last is the test target, the one
before it the validation target, the rest is training history. Fine-tuning
uses the same split (``finetune.data``), so no test or validation item is
ever trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.data.catalog import Catalog, catalog_from_histories
from agent.data.stats import group_by_user, head_tail_split, popularity_counts


@dataclass(frozen=True)
class Case:
    """One user to evaluate: history (time order), the held-out target, negatives."""

    user: int
    history: tuple[int, ...]
    target: int
    negatives: tuple[int, ...] = ()  # for the sampled 1+99 protocol


@dataclass
class Split:
    train_catalog: Catalog  # popularity, head/tail and co-watch from training interactions only
    valid: list[Case]
    test: list[Case]
    tail: set[int]
    head_threshold: int


def leave_one_out(catalog: Catalog, min_history: int = 3) -> tuple[dict, dict, dict]:
    """``(train_histories, valid_targets, test_targets)`` keyed by user.

    Users with fewer than ``min_history + 2`` interactions are left out: each
    kept user has at least ``min_history`` training items.

    Duplicate (user, item) pairs keep their first occurrence.
    """
    train, valid, test = {}, {}, {}
    for user, items in group_by_user(catalog.user, catalog.item, catalog.timestamp).items():
        items = list(dict.fromkeys(items))
        if len(items) < min_history + 2:
            continue
        train[user], valid[user], test[user] = items[:-2], items[-2], items[-1]
    return train, valid, test


def make_split(catalog: Catalog, n_negatives: int = 99, seed: int = 0) -> Split:
    """Split ``catalog`` and rebuild its statistics from training interactions only."""
    train, valid, test = leave_one_out(catalog)
    users = sorted(train)
    train_cat = catalog_from_histories(catalog, train, "leave-one-out train")
    head, threshold = head_tail_split(popularity_counts(train_cat.item, list(catalog.items)))
    rng = np.random.default_rng(seed)
    all_ids = np.array(sorted(catalog.items))

    def cases(targets: dict, extra: dict | None) -> list[Case]:
        out = []
        for u in users:
            history = tuple(train[u]) + ((extra[u],) if extra else ())
            seen = set(history) | {targets[u]}
            pool = all_ids[~np.isin(all_ids, list(seen))]
            neg = tuple(int(i) for i in rng.choice(pool, size=min(n_negatives, len(pool)),
                                                   replace=False))
            out.append(Case(u, history, targets[u], neg))
        return out

    # Test histories include the validation item: it happened before the test item.
    return Split(train_cat, cases(valid, None), cases(test, valid), set(catalog.items) - head,
                 threshold)


def sample_users(cases: list[Case], n: int | None, seed: int) -> list[Case]:
    """A fixed-seed subsample of ``n`` cases (all when ``n`` is None or larger)."""
    if n is None or n >= len(cases):
        return list(cases)
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(cases), size=n, replace=False))
    return [cases[i] for i in idx]
