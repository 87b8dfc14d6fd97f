"""Turn latency: time to first recommendation (the picks are known, explanations not
yet) and the full turn, over the scripted dialogues.

With ``Recommender.turn_stream`` the first figure is when its ``picks`` event
arrives; a recommender without it (an older one) gives parse + retrieve + rank
from ``Reply.timings`` instead.
"""

from __future__ import annotations

import time

from bench.stats import summary


def timed_turn(recommender, message: str, state) -> dict:
    """One turn: ``{"ttfr_s", "turn_s", "reply", "how"}``."""
    t0 = time.perf_counter()
    if not hasattr(recommender, "turn_stream"):
        reply = recommender.turn(message, state)
        turn_s = time.perf_counter() - t0
        t = reply.timings
        ttfr = sum(t.get(k, 0.0) for k in ("parse", "retrieve", "rank"))
        return {"ttfr_s": ttfr, "turn_s": turn_s, "reply": reply, "how": "timings"}
    ttfr, reply = None, None
    for event in recommender.turn_stream(message, state):
        if event.kind == "picks" and ttfr is None:
            ttfr = time.perf_counter() - t0
        reply = event.reply
    turn_s = time.perf_counter() - t0
    return {"ttfr_s": turn_s if ttfr is None else ttfr, "turn_s": turn_s, "reply": reply,
            "how": "turn_stream"}


def run_dialogues(recommender, dialogues, label: str, log=print, warm_up: bool = True) -> dict:
    """Every scripted dialogue once, state carried from turn to turn, after one warm-up
    turn (loads the embedder, computes the ranker's label prior, fills the prefix cache;
    ``warm_up=False`` when the caller has warmed these parts already).

    Turns that recommend nothing (a clarifying question) are counted, not timed.
    """
    from bench.dialogues import WARM_UP

    if warm_up:
        timed_turn(recommender, WARM_UP, None)
    ttfr, turn, notices, empty, degraded, how = [], [], [], 0, 0, set()
    for dialogue in dialogues:
        state = None
        for message in dialogue:
            r = timed_turn(recommender, message, state)
            state = r["reply"].state
            how.add(r["how"])
            notices += list(r["reply"].notices)
            degraded += bool(r["reply"].notices)
            if not r["reply"].recommendations:
                empty += 1
                continue
            ttfr.append(r["ttfr_s"])
            turn.append(r["turn_s"])
        log(f"  {label}: {len(turn)} turns, last {turn[-1] if turn else float('nan'):.2f} s")
    return latency_block(ttfr, turn, empty, degraded, notices, sorted(how))


def latency_block(ttfr: list[float], turn: list[float], empty: int, degraded: int,
                  notices: list[str], how: list[str]) -> dict:
    """The figures the report reads, from per-turn seconds.

    >>> b = latency_block([0.5, 1.5], [1.0, 3.0], 0, 0, [], ["turn_stream"])
    >>> b["ttfr_p50_s"], b["turn_p95_s"], b["turns"]
    (1.0, 2.9, 2)
    """
    t, f = summary(ttfr), summary(turn)
    return {"turns": len(turn), "turns_without_items": empty,
            "ttfr_p50_s": t.get("p50"), "ttfr_p95_s": t.get("p95"),
            "turn_p50_s": f.get("p50"), "turn_p95_s": f.get("p95"),
            "ttfr_s": t, "turn_s": f, "ttfr_measured_by": how,
            "notices": sorted(set(notices)), "turns_with_notices": degraded}
