"""Evaluation throughput: users per second that ``tailor eval`` ranks and scores, for a
cheap system and the LLM re-ranker, on a fixed-seed sample of test users.

It calls ``eval.run.run_evaluation`` itself (the code ``tailor eval`` runs) with the
already-loaded model, so model loading is not counted; the split, the systems'
set-up and the report are outside each system's own wall time too.
"""

from __future__ import annotations

import time


def users_per_s(report: dict) -> dict:
    """``{system: {"users", "seconds", "users_per_s"}}`` from an evaluation report.

    >>> users_per_s({"systems": {"hybrid": {"n_users": 50, "wall_time_s": 2.0}}})
    {'hybrid': {'users': 50, 'seconds': 2.0, 'users_per_s': 25.0}}
    """
    out = {}
    for name, s in report["systems"].items():
        seconds = s["wall_time_s"]
        out[name] = {"users": s["n_users"], "seconds": seconds,
                     "users_per_s": s["n_users"] / seconds if seconds else None}
    return out


def measure_eval(settings, backend, workdir, users: int, llm_users: int, log=print) -> dict:
    """Run ``popularity,hybrid,llm-zero`` on ``users`` users (``llm-zero`` on
    ``llm_users`` of them); the report goes to ``workdir``."""
    from pathlib import Path

    from eval.run import run_evaluation

    t0 = time.perf_counter()
    report = run_evaluation(settings, "popularity,hybrid,llm-zero", Path(workdir), users, seed=0,
                            log=lambda m: None, backend_factory=lambda adapter: backend,
                            conversation_users=0, llm_users=llm_users)
    per_system = users_per_s(report)
    log("  eval: " + ", ".join(f"{k} {v['users_per_s']:.1f} users/s"
                               for k, v in per_system.items()))
    return {"systems": per_system,
            "eval_users_per_s": {k: v["users_per_s"] for k, v in per_system.items()},
            "wall_s": time.perf_counter() - t0,
            "note": "per system: ranking + metrics + explanation checks for its users; "
                    "split, set-up and report outside"}
