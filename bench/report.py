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
    """A number for a table: 3 significant digits (whole numbers from 1000), or "–".

    >>> fmt(0.012345), fmt(1234.5), fmt(None), fmt(12), fmt(99.94)
    ('0.0123', '1234', '–', '12', '99.9')
    """
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def load_note(machine: dict) -> str:
    """The 1-minute load average at start and end, when recorded (other work skews timings).

    >>> load_note({"load_avg_1_5_15min": {"start": [0.31, 0.5, 0.6], "end": [2.04, 1, 1]}})
    '; load average 0.31 at the start, 2.04 at the end'
    """
    load = machine.get("load_avg_1_5_15min")
    if not load:
        return ""
    return f"; load average {load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end"


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
             f"{result['wall_s']:.0f} s in all{load_note(m)}.", "",
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
    lines += details(result.get("sections", {}))
    lines += ["", "## How each figure is measured", ""]
    lines += [f"- **{k}**: {v}" for k, v in result.get("method", {}).items()]
    skipped = result.get("skipped") or []
    if skipped:
        lines += ["", "Not measured: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def details(sections: dict) -> list[str]:
    """Markdown lines for the figures behind the headline: prompt sizes and load levels.

    >>> details({"api": {"levels": {"1": {"requests": 48, "errors": 0, "degraded": 0,
    ...     "turns_per_s": 1.5, "latency_s": {"p50": 0.6, "p95": 0.9}, "shed": 0,
    ...     "shed_share": 0.0}}}})[-1]
    '| 1 | 48 | 0.6 | 0.9 | 1.5 | 0 (0%) | 0 | 0 |'
    """
    lines = []
    tokens = sections.get("ranking", {}).get("tokens")
    if tokens:
        lines += ["", "Ranking prompts (median of "
                  f"{tokens['prompt']['n']}): {fmt(tokens['prompt']['p50'])} tokens, of which "
                  f"{fmt(tokens['cached_prefix']['p50'])} are the cached system prompt and "
                  f"demonstrations and {fmt(tokens['computed']['p50'])} are computed per turn; "
                  f"the generated answer takes {fmt(tokens['answer_tokens']['p50'])} tokens "
                  "as letters" + (f", {fmt(tokens['title_answer_tokens']['p50'])} as titles"
                                  if "title_answer_tokens" in tokens else "") + "."]
    levels = sections.get("api", {}).get("levels")
    if levels:
        lines += ["", "API under load (`tailor serve` through vLLM, load from a second process; "
                  "percentiles and turns/s of answered turns):",
                  "", "| sessions | requests | p50 s | p95 s | turns/s | shed (429) | errors "
                  "| degraded |", "|---|---|---|---|---|---|---|---|"]
        for c, lv in levels.items():
            lat = lv["latency_s"]
            shed = f"{lv.get('shed', 0)} ({lv.get('shed_share', 0.0):.0%})"
            lines.append(f"| {c} | {lv['requests']} | {fmt(lat.get('p50'))} | "
                         f"{fmt(lat.get('p95'))} | {fmt(lv['turns_per_s'])} | {shed} | "
                         f"{lv['errors']} | {lv['degraded']} |")
    return lines


def write_report(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "bench.md").write_text(markdown(result))
