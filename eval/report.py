"""Write an evaluation's report: JSON for tools, Markdown for people, PNG plots."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

MAIN_COLUMNS = ("ndcg@10", "hr@10", "mrr@10", "recall@20", "tail_share@10", "coverage@10",
                "gini@10", "novelty@10", "ild@10", "oov_rate@20", "faithfulness")


def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_report(out: Path, settings, specs, split, cases, results, seed, users,
                 wall_time_s: float, conversation: dict | None = None,
                 llm_users: int | None = None, sha: str | None = None,
                 training: dict | None = None) -> dict:
    """``sha``: the commit the run started at (a commit made while it ran is not its code).
    ``training``: what trained systems report of their training (recall of each
    candidate source, the fusion's feature importances)."""
    from agent.rank.verbalizer import RANK_PROMPTS
    from prompts import prompt_hashes

    out.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": settings.dataset,
        "protocol": {
            "split": "leave-one-out by time: last interaction = test, second-last = validation",
            "main": "full ranking over every item the user has not interacted with",
            "sampled": "1 target + 99 uniformly sampled unseen items (reported separately); "
                       "pool systems (hybrid, llm-*) rank the sampled items in the order of "
                       "their full-ranking pool, then by popularity",
            "tail": "items outside the most popular ones that make 80% of training interactions",
            "head_threshold_min_interactions": split.head_threshold,
            "tail_items": len(split.tail),
            "test_users_total": len(split.test),
            "users_evaluated": len(cases),
            "users_arg": users,
            "llm_users": llm_users,
            "seed": seed,
        },
        "config": settings.public(),
        "systems_requested": [f"{n}:{a}" if a is not None else n for n, a in specs],
        "model": settings.model,
        "adapter": settings.adapter,
        "prompt_hashes": prompt_hashes(RANK_PROMPTS),
        "git_sha": sha or git_sha(),
        "wall_time_s": wall_time_s,
        "systems": {r.name: r.to_json() for r in results},
        "conversation": conversation or {},
        "training": training or {},
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    plot(report, out)
    return report


def markdown(report: dict) -> str:
    p = report["protocol"]
    lines = [f"# Evaluation on {report['dataset']}", "",
             f"{p['split']}; {p['main']}. {p['users_evaluated']} of {p['test_users_total']} "
             f"test users (seed {p['seed']}). Tail = {p['tail_items']} items (head threshold "
             f"{p['head_threshold_min_interactions']} interactions). git {report['git_sha']}, "
             f"{report['wall_time_s']:.0f} s.", "", "## Full ranking", ""]
    systems = report["systems"]
    lines.append("| system | " + " | ".join(MAIN_COLUMNS) + " | s/user |")
    lines.append("|---" * (len(MAIN_COLUMNS) + 2) + "|")
    for name, r in systems.items():
        m = r["metrics"]
        cells = [f"{m[c]:.4f}" if c in m else "–" for c in MAIN_COLUMNS]
        per_user = r["wall_time_s"] / max(1, r["n_users"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {per_user:.3f} |")
    if any(r.get("subset_metrics") for r in systems.values()):
        lines += ["", "## Every system on the LLM systems' user subset", "",
                  "| system | users | ndcg@10 | hr@10 | mrr@10 | tail_share@10 |", "|---|---|---|---|---|---|"]
        for name, r in systems.items():
            m = r.get("subset_metrics") or {}
            if m:
                lines.append(f"| {name} | {report['protocol'].get('llm_users')} | {m['ndcg@10']:.4f} | "
                             f"{m['hr@10']:.4f} | {m['mrr@10']:.4f} | {m['tail_share@10']:.3f} |")
    lines += ["", "## Accuracy by target popularity (NDCG@10 / HR@10)", "",
              "| system | head targets | tail targets |", "|---|---|---|"]
    for name, r in systems.items():
        h, t = r["slices"].get("head_targets", {}), r["slices"].get("tail_targets", {})
        lines.append(f"| {name} | {h.get('ndcg@10', 0):.4f} / {h.get('hr@10', 0):.4f} (n={h.get('n_users', 0)}) "
                     f"| {t.get('ndcg@10', 0):.4f} / {t.get('hr@10', 0):.4f} (n={t.get('n_users', 0)}) |")
    lines += ["", "## Sampled 1+99 (not comparable with the full ranking)", "",
              "| system | ndcg@10 | hr@10 | mrr@10 |", "|---|---|---|---|"]
    for name, r in systems.items():
        s = r["sampled_metrics"]
        if s:
            lines.append(f"| {name} | {s['ndcg@10']:.4f} | {s['hr@10']:.4f} | {s['mrr@10']:.4f} |")
    if report.get("conversation"):
        lines += ["", "## Simulated conversations", "", "```",
                  json.dumps(report["conversation"], indent=1), "```"]
    for name, t in (report.get("training") or {}).items():
        lines += ["", f"## Training of {name}", ""]
        if "recall@50_valid" in t:
            fitted = (f" (sources fitted {t['held_out']} items earlier)"
                      if "held_out" in t else "")
            lines += [f"Recall@50 on the validation users{fitted}, by candidate source: "
                      + ", ".join(f"{s} {v:.3f}" for s, v in t["recall@50_valid"].items())
                      + ".", ""]
        if "train_cases" in t:
            lines += [f"The fusion learned on {t['train_cases']} cases (each user's last "
                      f"{t['held_out']} items before the test item), "
                      f"{t['recall@50_train_cases']:.1%} of them with the target among "
                      f"the candidates; best rounds {t['fusion'].get('best_rounds')}.", ""]
        if "importance_llm" in t:
            lines += [f"The fusion with the LLM column learned on {t['cases']} cases of "
                      f"{t['users']} users, the LLM scoring each one's top {t['n_llm']} "
                      "(ranked by a fusion fitted on the other users); the column's share "
                      f"of the gain {t['importance_llm']:.3f}.", ""]
        if "ablation" in t:
            lines += ["Ablation (the fusion retrained without one source or feature, the "
                      "same users):", "", "| without | NDCG@10 | recall of the candidates |",
                      "|---|---|---|"]
            lines += [f"| {'(nothing)' if k == 'all' else k[1:]} | {v['ndcg@10']:.4f} | "
                      f"{v['recall']:.3f} |" for k, v in t["ablation"].items()]
            lines += [""]
        if "tail_choice" in t:
            c = t["tail_choice"]
            ref = c["reference"]
            lines += [f"Tail choice on {c['cases']} training cases, out of fold: the sequence "
                      f"model's tail share {ref['tail_share@10']:.3f} and coverage "
                      f"{ref['coverage@10']:.3f}; least boost reaching both: {c['chosen']}.",
                      "", "| tail_boost | NDCG@10 | tail share@10 | coverage@10 |",
                      "|---|---|---|---|"]
            lines += [f"| {b} | {v['ndcg@10']:.4f} | {v['tail_share@10']:.3f} | "
                      f"{v['coverage@10']:.3f} |" for b, v in c["curve"].items()]
            lines += [""]
        if "importances" in t:
            top = sorted(t["importances"].items(), key=lambda kv: -kv[1])
            lines += ["Fusion feature importances (share of gain): " + ", ".join(
                f"{f} {v:.3f}" for f, v in top if v > 0) + "; unused: "
                + (", ".join(f for f, v in top if v == 0) or "none") + ".", ""]
    lines += ["", f"Prompt hashes: {report['prompt_hashes']}", ""]
    return "\n".join(lines)


def plot(report: dict, out: Path) -> None:
    """``accuracy_vs_tail.png``: NDCG@10 against tail share@10, one point per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    everyone = report["protocol"]["users_evaluated"]
    points: dict[tuple, list[tuple]] = {}  # systems within ~1.5% of each other share a label
    top = max((r["metrics"]["ndcg@10"] for r in report["systems"].values()), default=0) or 1.0
    for name, r in report["systems"].items():
        m = r["metrics"]
        # Systems run on a user subset are marked: their points are not on the same users.
        label = name if r["n_users"] == everyone else f"{name} (n={r['n_users']})"
        spot = (round(m["tail_share@10"] / 0.015), round(m["ndcg@10"] / top / 0.015),
                label == name)
        points.setdefault(spot, []).append((label, m["tail_share@10"], m["ndcg@10"]))
    for (_, _, full), members in points.items():
        x, y = members[0][1], members[0][2]
        labels = [label for label, _, _ in members]
        ax.scatter([p[1] for p in members], [p[2] for p in members], s=40,
                   marker="o" if full else "^")
        ax.annotate(", ".join(labels), (x, y), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    # The re-ranker's strengths (llm-lora plus llm-lora-tail:S) as one frontier line.
    frontier = sorted(((float(n.rpartition(":")[2]) if ":" in n else 0.0, r["metrics"])
                       for n, r in report["systems"].items()
                       if n == "llm-lora" or n.startswith("llm-lora-tail:")), key=lambda p: p[0])
    if len(frontier) > 1:
        ax.plot([m["tail_share@10"] for _, m in frontier], [m["ndcg@10"] for _, m in frontier],
                color="gray", lw=1, ls="--", zorder=0, label="tail_boost frontier")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("tail share @10 (higher = more long-tail items)")
    ax.set_ylabel("NDCG@10 (full ranking)")
    ax.set_title(f"Accuracy vs long tail — {report['dataset']}, "
                 f"{report['protocol']['users_evaluated']} users")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_tail.png")
    plt.close(fig)
