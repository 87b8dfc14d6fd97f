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
    Target("local_api_vs_flop_limit", ">=", 0.8, "API throughput at saturation (in-process "
           "model) ≥ 80% of the FLOP-limited turns/s"),
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
    '| 1 | 48 | 0.6 | 0.9 | 1.5 | – | 0 (0%) | 0 | 0 |'
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
    for name, how in (("api_local", "with the in-process model"), ("api", "ranking through vLLM")):
        levels = sections.get(name, {}).get("levels")
        if levels:
            lines += load_table(levels, how)
    return lines


def load_table(levels: dict, how: str) -> list[str]:
    """One API load run's levels; with the FLOP limit where the server counted its
    model's FLOPs (``/v1/stats``)."""
    lines = ["", f"API under load (`tailor serve` {how}, load from a second process; "
             "percentiles and turns/s of answered turns):", "",
             "| sessions | requests | p50 s | p95 s | turns/s | vs FLOP limit | shed (429) "
             "| errors | degraded |", "|---|---|---|---|---|---|---|---|---|"]
    for c, lv in levels.items():
        lat = lv["latency_s"]
        shed = f"{lv.get('shed', 0)} ({lv.get('shed_share', 0.0):.0%})"
        limit = lv.get("vs_flop_limit")
        lines.append(f"| {c} | {lv['requests']} | {fmt(lat.get('p50'))} | "
                     f"{fmt(lat.get('p95'))} | {fmt(lv['turns_per_s'])} | "
                     f"{'–' if limit is None else f'{limit:.0%}'} | {shed} | "
                     f"{lv['errors']} | {lv['degraded']} |")
    return lines


def write_report(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "bench.md").write_text(markdown(result))


API_KEYS = tuple(f"api_{q}_s_at_{c}" for c in (1, 4, 16, 64) for q in ("p50", "p95")) + (
    "api_p95_16_vs_1",)


def headline(sections: dict) -> dict:
    """The flat ``summary`` block (every figure the targets and README read) from the
    sections; a figure whose section did not run is None.

    >>> s = headline({})
    >>> s["api_p95_s_at_16"] is None and s["verbalizer_speedup"] is None
    True
    """
    def get(*path):
        node = sections
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        return node

    return {
        "verbalizer_speedup": get("ranking", "verbalizer_speedup"),
        "verbalizer_speedup_vs_titles": get("ranking", "verbalizer_speedup_vs_titles"),
        "ranking_vs_flop_floor": get("ranking", "ranking_vs_flop_floor"),
        "ranking_p50_s": get("ranking", "seconds", "verbalizer_s", "p50"),
        "flop_floor_p50_s": get("ranking", "floor_s", "cached", "p50"),
        "matmul_peak_gflops": get("floor", "peak_gflops"),
        "ttfr_p50_s": get("latency", "template", "ttfr_p50_s"),
        "ttfr_p95_s": get("latency", "template", "ttfr_p95_s"),
        "turn_p50_s": get("latency", "llm_explanations", "turn_p50_s"),
        "turn_p95_s": get("latency", "llm_explanations", "turn_p95_s"),
        "turn_template_p50_s": get("latency", "template", "turn_p50_s"),
        "turn_template_p95_s": get("latency", "template", "turn_p95_s"),
        "retrieval_p50_ms": get("retrieval", "real", "p50"),
        "retrieval_p95_ms": get("retrieval", "real", "p95"),
        "retrieval_100k_p50_ms": get("retrieval", "synthetic", "retrieval_p50_ms"),
        "retrieval_100k_p95_ms": get("retrieval", "synthetic", "retrieval_p95_ms"),
        "synthetic_items": get("retrieval", "synthetic", "items"),
        "index_build_s": get("index_build", "seconds"),
        "synthetic_index_build_s": get("retrieval", "synthetic", "index_build_s"),
        "eval_users_per_s": get("eval", "eval_users_per_s"),
        "vllm_start_s": get("vllm", "server", "start_s"),
        "vllm_ranking_p50_s": get("vllm", "ranking", "seconds", "verbalizer_s", "p50"),
        "vllm_verbalizer_speedup": get("vllm", "ranking", "verbalizer_speedup"),
        "vllm_ttfr_p50_s": get("vllm", "template", "ttfr_p50_s"),
        "vllm_ttfr_p95_s": get("vllm", "template", "ttfr_p95_s"),
        "vllm_turn_p50_s": get("vllm", "llm_explanations", "turn_p50_s"),
        "vllm_turn_p95_s": get("vllm", "llm_explanations", "turn_p95_s"),
        **{k: get("api", k) for k in API_KEYS},
        # the same load on `tailor serve` with the in-process model (no vLLM)
        **{"local_" + k: get("api_local", k) for k in API_KEYS},
        "local_api_saturated_turns_per_s": get("api_local", "api_saturated_turns_per_s"),
        "local_api_flop_limited_turns_per_s": get("api_local", "api_flop_limited_turns_per_s"),
        "local_api_vs_flop_limit": get("api_local", "api_vs_flop_limit"),
    }
