"""Bounded load on the HTTP API from a second process: ``python -m bench.api_load``.

For each concurrency level, that many client threads run conversations, each in a
new session (``POST /v1/sessions``, then one ``POST .../messages`` per message),
until the level's fixed number of turns is spent. Every session of a run is a
different conversation (``bench.dialogues.load_dialogue``), so no ranking prompt
repeats and a server's prefix cache holds only what real traffic would share. The
latency of every message request is recorded; one conversation before the first
level warms the server. A turn the server sheds (429, admission control) is counted
apart from errors, and its client waits the Retry-After it was given (at most
``MAX_BACKOFF_S``) before its next message, as a polite client would.
Only the standard library is used, so the load generator itself stays light.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.stats import summary

MAX_BACKOFF_S = 2.0
# Levels with at least this many sessions keep a server with one turn per core busy:
# pooled, their answered turns are the throughput at saturation.
SATURATED = 4


def get_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def model_work(base: str, timeout: float) -> dict | None:
    """The server's in-process model work so far (``GET /v1/stats``), or None."""
    try:
        work = get_json(base + "/v1/stats", timeout).get("model")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return work if work and work.get("flops_counted") else None


def work_done(before: dict | None, after: dict | None) -> dict | None:
    """What the model did between two ``model_work`` readings.

    >>> work_done({"flops": 1.0, "tokens": 5, "forward_passes": 1, "seconds": 0.5},
    ...           {"flops": 4.0, "tokens": 9, "forward_passes": 3, "seconds": 2.0})
    {'flops': 3.0, 'tokens': 4, 'forward_passes': 2, 'seconds': 1.5}
    """
    if not before or not after:
        return None
    return {k: after[k] - before[k] for k in ("flops", "tokens", "forward_passes", "seconds")}


def post(url: str, body: dict | None, timeout: float) -> dict:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Tickets:
    """A fixed number of turns shared by the client threads (the bound on the load)."""

    def __init__(self, n: int):
        self.left, self.next_dialogue, self._lock = n, 0, threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def dialogue(self) -> int:
        with self._lock:
            self.next_dialogue += 1
            return self.next_dialogue - 1


def run_dialogue(base: str, messages, tickets: Tickets | None, timeout: float,
                 results: list) -> None:
    """One session through ``messages``; appends ``(seconds, outcome, degraded)`` per
    turn, the outcome "ok", "shed" (429) or "error"."""
    try:
        sid = post(base + "/v1/sessions", None, timeout)["id"]
    except (urllib.error.URLError, OSError):
        if tickets is None or tickets.take():  # a failure spends a turn: the load stays bounded
            results.append((0.0, "error", False))
        return
    for m in messages:
        if tickets is not None and not tickets.take():
            return
        t0 = time.perf_counter()
        try:
            reply = post(f"{base}/v1/sessions/{sid}/messages", {"content": m}, timeout)
            results.append((time.perf_counter() - t0, "ok", bool(reply.get("notices"))))
        except urllib.error.HTTPError as e:
            shed = e.code == 429
            results.append((time.perf_counter() - t0, "shed" if shed else "error", False))
            if shed:
                time.sleep(min(MAX_BACKOFF_S, float(e.headers.get("Retry-After") or 1)))
        except (urllib.error.URLError, OSError):
            results.append((time.perf_counter() - t0, "error", False))


def run_level(base: str, dialogues, concurrency: int, turns: int, timeout: float,
              count_work: bool = False) -> dict:
    """``concurrency`` threads share ``turns`` turns of the cycled dialogues; with
    ``count_work``, the server's model work during the level is recorded too."""
    tickets, results = Tickets(turns), []
    before = model_work(base, timeout) if count_work else None

    def worker():
        while tickets.left > 0:
            d = dialogues[tickets.dialogue() % len(dialogues)]
            run_dialogue(base, d, tickets, timeout, results)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    work = work_done(before, model_work(base, timeout) if count_work else None)
    ok = [s for s, outcome, _ in results if outcome == "ok"]
    shed = sum(outcome == "shed" for _, outcome, _ in results)
    return {"concurrency": concurrency, "requests": len(results),
            "errors": len(results) - len(ok) - shed, "shed": shed,
            "shed_share": shed / len(results) if results else 0.0,
            "degraded": sum(d for _, _, d in results), "wall_s": wall,
            # answered turns a second; latency percentiles are of answered turns only
            "turns_per_s": len(ok) / wall if wall else None, "latency_s": summary(ok),
            "answered": len(ok), "server_work": work}


def flop_limit(level: dict, peak_gflops: float) -> dict:
    """The level with its FLOP-limited rate: this CPU's matmul peak over the model FLOPs
    the server spent per answered turn, and the measured turns/s against it.

    >>> lv = flop_limit({"answered": 10, "turns_per_s": 0.5, "server_work": {"flops": 1e12}},
    ...                 50.0)
    >>> lv["flop_limited_turns_per_s"], lv["vs_flop_limit"]
    (0.5, 1.0)
    """
    work = level.get("server_work")
    if not work or not work["flops"] or not level.get("answered"):
        return level
    per_turn = work["flops"] / level["answered"]
    limited = peak_gflops * 1e9 / per_turn
    return {**level, "flops_per_turn": per_turn, "flop_limited_turns_per_s": limited,
            "vs_flop_limit": level["turns_per_s"] / limited}


def level_turns(concurrency: int, turns: int) -> int:
    """A level's turns: ``turns``, or two per session where there are more sessions (so
    every session of a 64-session level sends something).

    >>> level_turns(4, 48), level_turns(64, 48)
    (48, 128)
    """
    return max(turns, 2 * concurrency)


def level_dialogues(levels: list[int], turns: int, make) -> list[list]:
    """Each level's own conversations: enough for its turns even if each had one
    message, none shared with another level (conversation 0 is the warm-up).

    >>> level_dialogues([1, 4], 3, lambda k: k)
    [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11]]
    """
    out, start = [], 1
    for c in levels:
        n = level_turns(c, turns)
        out.append([make(start + k) for k in range(n)])
        start += n
    return out


def drive(base: str, levels: list[int], turns: int, timeout: float, make_dialogue,
          count_work: bool = False) -> dict:
    run_dialogue(base, make_dialogue(0), None, timeout, [])  # warm-up, not recorded
    return {str(c): run_level(base, d, c, level_turns(c, turns), timeout, count_work)
            for c, d in zip(levels, level_dialogues(levels, turns, make_dialogue))}


def run_load_process(base: str, levels: list[int], turns: int, out: Path,
                     timeout: float = 300.0, wait_s: float = 1800.0) -> dict:
    """Run this module in a second Python process and return what it measured."""
    cmd = [sys.executable, "-m", "bench.api_load", "--url", base, "--turns", str(turns),
           "--timeout", str(timeout), "--out", str(out), "--work", "--levels", *map(str, levels)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=wait_s)
    if done.returncode != 0:
        raise RuntimeError(f"the load process failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def api_block(levels: dict, peak_gflops: float | None = None) -> dict:
    """Headline figures per level, and p95 at 16 against p95 at 1; the throughput at
    saturation (the answered turns of every level of ``SATURATED`` sessions or more,
    over their wall time); with this CPU's ``peak_gflops``, each level's FLOP limit
    (``flop_limit``) and the saturated throughput against the pooled one.

    >>> lv = {"1": {"latency_s": {"p50": 1.0, "p95": 2.0}},
    ...       "16": {"latency_s": {"p50": 5.0, "p95": 8.0}}}
    >>> b = api_block(lv)
    >>> b["api_p95_s_at_16"], b["api_p95_16_vs_1"]
    (8.0, 4.0)
    """
    if peak_gflops:
        levels = {c: flop_limit(lv, peak_gflops) for c, lv in levels.items()}
    out = {}
    for c, lv in levels.items():
        out[f"api_p50_s_at_{c}"] = lv["latency_s"].get("p50")
        out[f"api_p95_s_at_{c}"] = lv["latency_s"].get("p95")
        out[f"api_turns_per_s_at_{c}"] = lv.get("turns_per_s")
        out[f"api_shed_share_at_{c}"] = lv.get("shed_share")
    one, many = out.get("api_p95_s_at_1"), out.get("api_p95_s_at_16")
    out["api_p95_16_vs_1"] = many / one if one and many is not None else None
    busy = [lv for c, lv in levels.items() if int(c) >= SATURATED and lv.get("answered")]
    if busy:
        pooled = {"answered": sum(lv["answered"] for lv in busy),
                  "wall_s": sum(lv["wall_s"] for lv in busy)}
        pooled["turns_per_s"] = pooled["answered"] / pooled["wall_s"]
        works = [lv.get("server_work") for lv in busy]
        if peak_gflops and all(works):
            pooled = flop_limit({**pooled, "server_work": {"flops": sum(
                w["flops"] for w in works)}}, peak_gflops)
        out.update(api_saturated_turns_per_s=pooled["turns_per_s"],
                   api_flop_limited_turns_per_s=pooled.get("flop_limited_turns_per_s"),
                   api_vs_flop_limit=pooled.get("vs_flop_limit"))
    return {**out, "levels": levels}


def main(argv=None) -> int:
    from bench.dialogues import load_dialogue

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the API root, e.g. http://127.0.0.1:8080")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--turns", type=int, default=48, help="message requests per level")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    p.add_argument("--out", required=True)
    p.add_argument("--work", action="store_true",
                   help="record the server's model work per level (GET /v1/stats)")
    args = p.parse_args(argv)
    levels = drive(args.url.rstrip("/"), args.levels, args.turns, args.timeout, load_dialogue,
                   args.work)
    Path(args.out).write_text(json.dumps(levels, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
