"""Run systems x cases x metrics; keep a score per user as well as the mean."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from eval import metrics as M
from eval.protocols import Case, Split

K_LIST = (5, 10, 20)


@dataclass
class SystemResult:
    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    sampled_metrics: dict[str, float] = field(default_factory=dict)
    subset_metrics: dict[str, float] = field(default_factory=dict)  # on the LLM users' subset
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    per_user: dict[int, dict[str, float]] = field(default_factory=dict)
    wall_time_s: float = 0.0
    n_users: int = 0
    error: str | None = None

    def to_json(self) -> dict:
        return {"metrics": self.metrics, "sampled_metrics": self.sampled_metrics,
                "subset_metrics": self.subset_metrics,
                "slices": self.slices, "n_users": self.n_users, "wall_time_s": self.wall_time_s,
                "error": self.error, "per_user": {str(u): v for u, v in self.per_user.items()}}


def case_metrics(ranked: list[int], case: Case, split: Split, vectors, catalog_ids,
                 n_users: int, pop: dict[int, int]) -> dict[str, float]:
    """Every per-list metric for one user's ranked list."""
    rel = {case.target}
    out = sampled_case_metrics(ranked, case)
    for k in K_LIST:
        out[f"recall@{k}"] = M.recall_at_k(ranked, rel, k)
        out[f"tail_share@{k}"] = M.tail_share_at_k(ranked, split.tail, k)
        out[f"novelty@{k}"] = M.novelty_at_k(ranked, pop, n_users, k)
        if vectors is not None:
            out[f"ild@{k}"] = M.ild_at_k(ranked, vectors, k)
    kmax = max(K_LIST)
    out[f"oov_rate@{kmax}"] = M.oov_rate(ranked[:kmax], catalog_ids)
    out[f"history_repeat@{kmax}"] = M.history_repeat_rate(ranked[:kmax], set(case.history))
    out[f"duplicates@{kmax}"] = M.duplicate_rate(ranked[:kmax])
    return out


def sampled_case_metrics(ranked: list[int], case: Case) -> dict[str, float]:
    """HR, NDCG and MRR at each K: the accuracy metrics both protocols report."""
    rel = {case.target}
    out = {}
    for k in K_LIST:
        out[f"hr@{k}"] = M.hit_at_k(ranked, rel, k)
        out[f"ndcg@{k}"] = M.ndcg_at_k(ranked, rel, k)
        out[f"mrr@{k}"] = M.mrr_at_k(ranked, rel, k)
    return out


def mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else []
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def evaluate_system(system, cases: list[Case], split: Split, vectors=None, progress=True,
                    explainer=None) -> SystemResult:
    """Rank every case with ``system`` and compute per-user and aggregate metrics.

    ``explainer(case, ranked) -> list[bool]`` (optional) says, for each explained
    item, whether its explanation states only true facts.
    """
    from tqdm import tqdm

    res = SystemResult(system.name)
    catalog = split.train_catalog
    catalog_ids = set(catalog.items)
    n_users = len(np.unique(catalog.user))
    pop = {i: it.popularity for i, it in catalog.items.items()}
    lists = []
    sampled_rows = []
    t0 = time.perf_counter()
    if hasattr(system, "prepare"):  # LLM systems score their prompts in batches first
        system.prepare(cases, progress=progress)
    for case in tqdm(cases, desc=system.name, unit="user", disable=not progress, leave=False):
        ranked = system.rank(case, max(K_LIST))
        lists.append(ranked)
        row = case_metrics(ranked, case, split, vectors, catalog_ids, n_users, pop)
        if explainer is not None:
            checks = explainer(case, ranked)
            row["faithfulness"] = float(np.mean(checks)) if checks else 1.0
        res.per_user[case.user] = row
        if case.negatives:
            sampled = system.rank_candidates(case, [case.target, *case.negatives])
            sampled_rows.append(sampled_case_metrics(sampled, case))
    res.wall_time_s = time.perf_counter() - t0
    res.n_users = len(cases)
    rows = list(res.per_user.values())
    res.metrics = mean_of(rows)
    item_ids = sorted(catalog_ids)
    for k in K_LIST:
        res.metrics[f"coverage@{k}"] = M.coverage_at_k(lists, len(item_ids), k)
        res.metrics[f"gini@{k}"] = M.gini_at_k(lists, item_ids, k)
    res.sampled_metrics = mean_of(sampled_rows)
    for name, part in (("head_targets", lambda c: c.target not in split.tail),
                       ("tail_targets", lambda c: c.target in split.tail)):
        sel = [res.per_user[c.user] for c in cases if part(c)]
        res.slices[name] = {"n_users": len(sel), **({k: v for k, v in mean_of(sel).items()
                                                     if k.split("@")[0] in ("ndcg", "hr", "mrr")})}
    return res
