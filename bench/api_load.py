"""Bounded load on the HTTP API from a second process: ``python -m bench.api_load``.

For each concurrency level, that many client threads run conversations, each in a
new session (``POST /v1/sessions``, then one ``POST .../messages`` per message),
until the level's fixed number of turns is spent. Every session of a run is a
different conversation (``bench.dialogues.load_dialogue``), so no ranking prompt
repeats and a server's prefix cache holds only what real traffic would share. The
latency of every message request is recorded; one conversation before the first
level warms the server.
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
    """One session through ``messages``; appends ``(seconds, ok, degraded)`` per turn."""
    try:
        sid = post(base + "/v1/sessions", None, timeout)["id"]
    except (urllib.error.URLError, OSError):
        if tickets is None or tickets.take():  # a failure spends a turn: the load stays bounded
            results.append((0.0, False, False))
        return
    for m in messages:
        if tickets is not None and not tickets.take():
            return
        t0 = time.perf_counter()
        try:
            reply = post(f"{base}/v1/sessions/{sid}/messages", {"content": m}, timeout)
            results.append((time.perf_counter() - t0, True, bool(reply.get("notices"))))
        except (urllib.error.URLError, OSError):
            results.append((time.perf_counter() - t0, False, False))


def run_level(base: str, dialogues, concurrency: int, turns: int, timeout: float) -> dict:
    """``concurrency`` threads share ``turns`` turns of the cycled dialogues."""
    tickets, results = Tickets(turns), []

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
    ok = [s for s, good, _ in results if good]
    return {"concurrency": concurrency, "requests": len(results), "errors": len(results) - len(ok),
            "degraded": sum(d for _, _, d in results), "wall_s": wall,
            "turns_per_s": len(results) / wall if wall else None, "latency_s": summary(ok)}


def level_dialogues(level: int, turns: int, make) -> list:
    """Level ``level``'s own conversations: enough for ``turns`` turns even if each
    had one message, none shared with another level (conversation 0 is the warm-up).

    >>> level_dialogues(1, 3, lambda k: k)
    [4, 5, 6]
    """
    return [make(1 + level * turns + k) for k in range(turns)]


def drive(base: str, levels: list[int], turns: int, timeout: float, make_dialogue) -> dict:
    run_dialogue(base, make_dialogue(0), None, timeout, [])  # warm-up, not recorded
    return {str(c): run_level(base, level_dialogues(i, turns, make_dialogue), c, turns, timeout)
            for i, c in enumerate(levels)}


def run_load_process(base: str, levels: list[int], turns: int, out: Path,
                     timeout: float = 300.0, wait_s: float = 1800.0) -> dict:
    """Run this module in a second Python process and return what it measured."""
    cmd = [sys.executable, "-m", "bench.api_load", "--url", base, "--turns", str(turns),
           "--timeout", str(timeout), "--out", str(out), "--levels", *map(str, levels)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=wait_s)
    if done.returncode != 0:
        raise RuntimeError(f"the load process failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def api_block(levels: dict) -> dict:
    """Headline figures per level, and p95 at 16 against p95 at 1.

    >>> lv = {"1": {"latency_s": {"p50": 1.0, "p95": 2.0}},
    ...       "16": {"latency_s": {"p50": 5.0, "p95": 8.0}}}
    >>> b = api_block(lv)
    >>> b["api_p95_s_at_16"], b["api_p95_16_vs_1"]
    (8.0, 4.0)
    """
    out = {}
    for c, lv in levels.items():
        out[f"api_p50_s_at_{c}"] = lv["latency_s"].get("p50")
        out[f"api_p95_s_at_{c}"] = lv["latency_s"].get("p95")
    one, many = out.get("api_p95_s_at_1"), out.get("api_p95_s_at_16")
    out["api_p95_16_vs_1"] = many / one if one and many is not None else None
    return {**out, "levels": levels}


def main(argv=None) -> int:
    from bench.dialogues import load_dialogue

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the API root, e.g. http://127.0.0.1:8080")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--turns", type=int, default=48, help="message requests per level")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    levels = drive(args.url.rstrip("/"), args.levels, args.turns, args.timeout, load_dialogue)
    Path(args.out).write_text(json.dumps(levels, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
