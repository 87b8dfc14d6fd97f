"""How far a quantized (or served) model's ranking strays from in-process fp32, and how fast.

Cases are MovieLens users: each liked the two items they watched last; the
candidates are the first ``--candidates`` (default: the agent's
``llm_candidates``, 10) the real retriever returns for that state. Every system
ranks the same prompts with the same VerbalizerRanker the agent uses. Prints a Markdown
table; ``--out`` also writes per-case numbers as JSON.

    TAILOR_HOME=/tmp/th .venv/bin/python -m bench.rank_agreement --cases 200 \
        --systems fp32 8bit 4bit [--llm-url http://127.0.0.1:8000/v1 --llm-model NAME]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def make_cases(catalog, retriever, n_cases: int, n_cands: int, seed: int = 0):
    """``[(state, candidates)]`` for ``n_cases`` users drawn at random (fixed seed)."""
    from agent.types import DialogueState

    rng = np.random.default_rng(seed)
    users = np.unique(catalog.user)
    cases = []
    for u in rng.permutation(users)[:n_cases]:
        mine = np.flatnonzero(catalog.user == u)
        last_two = catalog.item[mine[np.argsort(catalog.timestamp[mine])[-2:]]]
        state = DialogueState(liked=tuple(int(i) for i in last_two))
        cases.append((state, retriever.retrieve(state, n_cands)))
    return cases


def backend_for(system: str, settings, args):
    from agent.build import make_backend
    from dataclasses import replace

    if system == "server":
        return make_backend(replace(settings, llm_url=args.llm_url, llm_model=args.llm_model,
                                    llm_timeout=600.0))
    return make_backend(replace(settings, quant="none" if system == "fp32" else system))


def run(system, backend, catalog, cases, n_cands: int):
    """Per case: calibrated LLM scores in candidate order, final order, seconds."""
    from agent.rank.verbalizer import VerbalizerRanker

    ranker = VerbalizerRanker(backend, catalog, n_llm=n_cands)
    ranker.label_prior(n_cands)  # computed once, outside the timings
    out = []
    for state, cands in cases:
        t = time.perf_counter()
        ranked = ranker.rank(state, cands)
        seconds = time.perf_counter() - t
        by_id = {r.item_id: r.llm_score for r in ranked}
        out.append({"llm": [by_id[c.item_id] for c in cands],
                    "order": [r.item_id for r in ranked], "seconds": seconds})
        print(f"  {system}: case {len(out)}/{len(cases)} {seconds:.2f} s", flush=True)
    return out


def compare(ref, other) -> dict:
    from scipy.stats import spearmanr

    rho = [spearmanr(a["llm"], b["llm"]).statistic for a, b in zip(ref, other)]
    top1 = [a["order"][0] == b["order"][0] for a, b in zip(ref, other)]
    top3 = [len(set(a["order"][:3]) & set(b["order"][:3])) / 3 for a, b in zip(ref, other)]
    return {"spearman_mean": float(np.mean(rho)), "spearman_min": float(np.min(rho)),
            "top1_same": float(np.mean(top1)), "top3_overlap": float(np.mean(top3))}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--candidates", type=int, help="candidates per prompt (default: the "
                   "agent's TAILOR_LLM_CANDIDATES)")
    p.add_argument("--systems", nargs="+", default=["fp32", "8bit", "4bit"],
                   choices=["fp32", "8bit", "4bit", "server"])
    p.add_argument("--llm-url")
    p.add_argument("--llm-model")
    p.add_argument("--out", help="write per-case results as JSON here")
    p.add_argument("--reuse", help="take systems already measured from this --out file "
                   "(the cases must be the same)")
    args = p.parse_args(argv)

    from agent.build import build_recommender
    from agent.llm.fake import FakeBackend
    from agent.settings import Settings

    settings = Settings.from_env()
    rec = build_recommender(settings, backend=FakeBackend(), log=lambda m: None)
    n_cands = args.candidates or settings.llm_candidates
    cases = make_cases(rec.catalog, rec.retriever, args.cases, n_cands)
    systems = ["fp32"] + [s for s in args.systems if s != "fp32"]
    keys = [[list(state.liked), [c.item_id for c in cands]] for state, cands in cases]
    results = {}
    if args.reuse:
        with open(args.reuse) as f:
            old = json.load(f)
        if old.get("cases") != keys:
            raise SystemExit(f"{args.reuse} was measured on other cases")
        results = {s: old["results"][s] for s in systems if s in old["results"]}
    for s in systems:
        if s not in results:
            results[s] = run(s, backend_for(s, settings, args), rec.catalog, cases, n_cands)
    print(f"\n{len(cases)} cases, {n_cands} candidates each; rank call = one ranking prompt "
          "after the cached prefix\n")
    print("| system | median s/rank | mean s/rank | Spearman vs fp32 (mean / min) "
          "| same top-1 | top-3 overlap |\n|---|---|---|---|---|---|")
    for s in systems:
        secs = [r["seconds"] for r in results[s]]
        c = compare(results["fp32"], results[s])
        print(f"| {s} | {np.median(secs):.2f} | {np.mean(secs):.2f} | {c['spearman_mean']:.3f} "
              f"/ {c['spearman_min']:.3f} | {c['top1_same']:.0%} | {c['top3_overlap']:.0%} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"systems": systems, "cases": keys, "results": results}, f)


if __name__ == "__main__":
    main()
