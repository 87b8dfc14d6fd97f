"""``tailor retrain``'s report: the collaborative stages before and after the interaction
log is merged, on one held-out split.

The split is the evaluation's leave-one-out split of the *merged* interactions: each
user's last interaction is the test target, the one before it the validation target.
"after" systems are fitted on the merged training interactions; "before" systems on
the part of them that was in the dataset before the merge (the models in service until
now, refitted without the test targets). Both are scored on the same test cases with
the same histories, so the difference is what the logged interactions taught. No test
target is trained on by either; the validation targets are used for early stopping and
the fusion's training, as in ``tailor eval``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent.data.catalog import catalog_from_histories
from eval.protocols import Case, Split, make_split, sample_users

METRICS = ("ndcg@10", "hr@10", "recall@20")
DEFAULT_SYSTEMS = "popularity,sasrec,tailor"


def before_split(split: Split, old) -> Split:
    """``split`` seen from the dataset before the merge: training histories and validation
    targets keep only the (user, item) pairs ``old`` had; the test cases are unchanged."""
    pairs = set(zip(old.user.tolist(), old.item.tolist()))
    train, valid = {}, []
    for c in split.valid:  # a validation case's history is the user's training history
        kept = [i for i in c.history if (c.user, i) in pairs]
        if (c.user, c.target) in pairs and kept:
            train[c.user] = kept
            valid.append(Case(c.user, tuple(kept), c.target, c.negatives))
        elif len(kept) >= 2:  # the validation item is new: the last old item stands in
            train[c.user] = kept[:-1]
            valid.append(Case(c.user, tuple(kept[:-1]), kept[-1], c.negatives))
    cat = catalog_from_histories(split.train_catalog, train, "before the merge")
    return Split(cat, valid, split.test, split.tail, split.head_threshold)


def _means(per_user: dict, users) -> dict[str, float]:
    rows = [per_user[u] for u in users if u in per_user]
    return {m: (sum(r[m] for r in rows) / len(rows) if rows else float("nan")) for m in METRICS}


def paired_change(before: dict, after: dict, users, metric: str = "ndcg@10") -> dict:
    """The mean per-user change of ``metric`` and its 95% interval (normal approximation
    over the paired differences): whether "after" differs from noise.

    >>> c = paired_change({1: {"m": 0.0}, 2: {"m": 0.5}}, {1: {"m": 0.5}, 2: {"m": 0.5}},
    ...                   [1, 2], "m")
    >>> c["mean"], round(c["low"], 3), round(c["high"], 3)
    (0.25, -0.24, 0.74)
    """
    import math

    diffs = [after[u][metric] - before[u][metric] for u in users if u in before and u in after]
    n = len(diffs)
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "users": 0}
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "users": n}


def before_after(settings, old, merge, systems: str = DEFAULT_SYSTEMS, users: int | None = None,
                 seed: int = 0, log=print) -> dict:
    """Score ``systems`` fitted before and after ``merge`` (``agent.data.retrain``) on
    the merged split's test cases (``users``: a fixed-seed sample of them)."""
    from agent.data.assets import prepare_embedder
    from agent.retrieve.embeddings import SentenceEmbedder
    from agent.retrieve.index import make_client, open_collection
    from eval.experiment import evaluate_system
    from eval.run import build_systems, parse_systems

    t0 = time.perf_counter()
    after = make_split(merge.catalog, seed=seed)
    before = before_split(after, old)
    cases = sample_users(after.test, users, seed)
    touched = sorted({c.user for c in cases} & merge.touched_users)
    log(f"report: {len(cases)} test users ({len(touched)} with logged interactions); "
        f"fitting {systems} on the interactions before the merge, then after it")
    embedder = SentenceEmbedder(str(prepare_embedder(settings, log)))
    collection = open_collection(make_client(settings), embedder, settings.dataset)
    specs = parse_systems(systems)
    rows, per_user = {}, {}
    users = [c.user for c in cases]
    for label, split in (("before", before), ("after", after)):
        built, vectors = build_systems(specs, settings, split, collection, embedder, None, log)
        for system in built:
            res = evaluate_system(system, cases, split, vectors)
            per_user[(system.name, label)] = res.per_user
            row = rows.setdefault(system.name, {})
            row[label] = {"all": _means(res.per_user, users),
                          "logged_users": _means(res.per_user, touched)}
    for name, row in rows.items():
        b, a = per_user[(name, "before")], per_user[(name, "after")]
        row["change_ndcg@10"] = {"all": paired_change(b, a, users),
                                 "logged_users": paired_change(b, a, touched)}
    return {"dataset": settings.dataset, "test_users": len(cases), "logged_users": len(touched),
            "added_interactions": merge.added, "new_users": len(merge.new_users),
            "systems": rows, "seconds": round(time.perf_counter() - t0, 1)}


def render(report: dict) -> str:
    """The report as a Markdown table (NDCG@10, HR@10 and recall@20, before -> after)."""
    lines = [f"# Retrain report: {report['dataset']}", "",
             f"{report['added_interactions']} logged interactions merged "
             f"({report['new_users']} new users). Held-out split: each user's last "
             f"interaction; {report['test_users']} test users, {report['logged_users']} of "
             "them with logged interactions.", "",
             "| system | users | " + " | ".join(f"{m} before | after" for m in METRICS)
             + " | ndcg@10 change (95% interval) |",
             "|---|---|" + "---|---|" * len(METRICS) + "---|"]
    for name, row in report["systems"].items():
        for part, label in (("all", "all"), ("logged_users", "with logged")):
            cells = [f"{row['before'][part][m]:.4f} | {row['after'][part][m]:.4f}"
                     for m in METRICS]
            c = row["change_ndcg@10"][part]
            cells.append(f"{c['mean']:+.4f} ({c['low']:+.4f} to {c['high']:+.4f})")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nAn interval that spans 0 is a change within noise.\n"


def write_report(out: Path, report: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrain.json").write_text(json.dumps(report, indent=1))
    (out / "retrain.md").write_text(render(report))
    return out / "retrain.md"
