"""``bench.json`` for tools and ``bench.md`` for people, with each target met or missed.

Pure functions of the result dict, except ``write_report``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    key: str  # a key of the result's ``summary`` block
    op: str  # ">=" or "<="
    bound: float
    text: str


TARGETS = (
    Target("verbalizer_speedup", ">=", 30.0, "verbalizer ranking ≥ 30× faster than generation"),
    Target("ranking_vs_flop_floor", "<=", 2.0, "ranking forward within 2× of its FLOP floor"),
    Target("ttfr_p50_s", "<=", 1.5, "time to first recommendation p50 ≤ 1.5 s"),
    Target("turn_p50_s", "<=", 4.0, "full turn with 3 explanations p50 ≤ 4 s"),
    Target("api_p95_16_vs_1", "<=", 2.0, "API p95 at 16 sessions ≤ 2× single-session"),
)


def evaluate_targets(summary: dict, targets=TARGETS) -> dict:
    """``{key: {"value", "target", "op", "met", "text"}}``; ``met`` is None when the
    figure was not measured (e.g. ``--no-vllm``).

    >>> t = evaluate_targets({"verbalizer_speedup": 40.0, "ttfr_p50_s": 2.0})
    >>> t["verbalizer_speedup"]["met"], t["ttfr_p50_s"]["met"], t["turn_p50_s"]["met"]
    (True, False, None)
    """
    out = {}
    for t in targets:
        value = summary.get(t.key)
        met = None if value is None else (value >= t.bound if t.op == ">=" else value <= t.bound)
        out[t.key] = {"value": value, "target": t.bound, "op": t.op, "met": met, "text": t.text}
    return out


def fmt(value, digits: int = 3) -> str:
    """A number for a table: 3 significant digits, or "–" when missing.

    >>> fmt(0.012345), fmt(1234.5), fmt(None), fmt(12)
    ('0.0123', '1.23e+03', '–', '12')
    """
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def verdict(met) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def markdown(result: dict) -> str:
    """The report as Markdown: targets first, then every figure with its sample size."""
    s, m = result["summary"], result["machine"]
    lines = [f"# tailor bench{' (quick)' if result.get('quick') else ''}", "",
             f"git {result.get('git_sha')}, model `{result['model']['name']}` "
             f"({fmt(result['model']['params']['total'] / 1e6)} M parameters, "
             f"{fmt(result['model']['params']['non_embedding'] / 1e6)} M outside the embedding), "
             f"{m['cpu_count']} CPUs, torch threads {m['torch_threads']}, "
             f"{result['wall_s']:.0f} s in all.", "",
             "## Targets", "", "| target | value | bound | verdict |", "|---|---|---|---|"]
    for key, t in result["targets"].items():
        lines.append(f"| {t['text']} | {fmt(t['value'])} | {t['op']} {fmt(t['target'])} "
                     f"| {verdict(t['met'])} |")
    lines += ["", "## Figures", "", "| figure | value |", "|---|---|"]
    for key, value in s.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
        else:
            value = fmt(value)
        lines.append(f"| `{key}` | {value} |")
    lines += ["", "## How each figure is measured", ""]
    lines += [f"- **{k}**: {v}" for k, v in result.get("method", {}).items()]
    skipped = result.get("skipped") or []
    if skipped:
        lines += ["", "Not measured: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def write_report(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "bench.md").write_text(markdown(result))
