"""``tailor finetune-report``: zero-shot, few-shot and LoRA on held-out TEST users.

Only users whose test target the retriever really found (the honest subset)
can be reordered into a hit, so that is where rankers are compared: the
retriever's own order is the bar, chance is the floor. Nothing here is tuned:
the fusion weight comes from the adapter's validation run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from agent.errors import AssetError, ConfigError
from finetune.data import position_ndcg


def load_adapter_meta(settings, name: str) -> dict:
    from finetune.train import META_FILE

    path = settings.adapters_dir / name / META_FILE
    if not path.is_file():
        raise AssetError(f"no fine-tuned adapter named {name!r} (no {path}); train one with "
                         "`tailor finetune`")
    return json.loads(path.read_text())


def _summary(positions: list[int]) -> dict:
    return {"ndcg@10": float(np.mean([position_ndcg(p) for p in positions])),
            "hr@1": float(np.mean([p == 0 for p in positions])), "n": len(positions)}


def _position(ranked_ids: list[int], target: int) -> int:
    return ranked_ids.index(target)


def compare_on_test(settings, adapter: str, out: Path, users: int | None = None,
                    log=print) -> dict:
    """Rank each honest test case with every ranker and write ``finetune_report.{json,md}``."""
    from tqdm import tqdm

    from agent.build import adapter_location, model_location
    from agent.data.catalog import Catalog
    from agent.llm.local import LocalBackend
    from agent.rank.verbalizer import VerbalizerRanker, zscore
    from agent.retrieve.sources import HybridRetriever
    from eval.protocols import make_split, sample_users
    from eval.systems import case_state
    from finetune.data import chance_ndcg
    from finetune.run import open_retrieval

    t0 = time.perf_counter()
    meta = load_adapter_meta(settings, adapter)
    if meta.get("config", {}).get("candidates_from", "hybrid") != "hybrid":
        raise ConfigError(f"adapter {adapter!r} was fine-tuned on the fusion's candidates; "
                          "compare it where the fusion ranks: `tailor eval --adapter "
                          f"{adapter} --systems sasrec,tailor,llm-feature`")
    n, w = meta["candidates"], meta["fusion_weight"]
    catalog = Catalog.load(settings.data_dir())
    split = make_split(catalog, seed=meta["config"]["seed"])
    collection, embedder = open_retrieval(settings, log)
    retriever = HybridRetriever(collection, embedder, split.train_catalog)
    cases = sample_users(split.test, users, 0)
    honest = []
    for case in tqdm(cases, desc="retrieving", unit="user", leave=False):
        cands = retriever.retrieve(case_state(case), n)
        if case.target in [c.item_id for c in cands]:
            honest.append((case, cands))
    log(f"{len(honest)} of {len(cases)} test users have their target in the retriever's top {n}")
    base = LocalBackend(model_location(settings), threads=settings.threads)
    tuned = LocalBackend(model_location(settings), threads=settings.threads,
                         adapter_path=str(adapter_location(replace(settings, adapter=adapter))))
    rankers = {
        "zero-shot": VerbalizerRanker(base, split.train_catalog, n, settings.llm_weight, False),
        "few-shot": VerbalizerRanker(base, split.train_catalog, n, settings.llm_weight, True),
        "lora": VerbalizerRanker(tuned, split.train_catalog, n, w, False, calibrate=False),
    }
    positions: dict[str, list[int]] = {k: [] for k in ("retriever", "zero-shot llm-only",
                                                       "zero-shot fused", "few-shot llm-only",
                                                       "few-shot fused", "lora llm-only",
                                                       "lora fused")}
    for case, cands in tqdm(honest, desc="ranking", unit="user", leave=False):
        positions["retriever"].append(_position([c.item_id for c in cands], case.target))
        for name, ranker in rankers.items():
            ranked = ranker.rank(case_state(case), cands)
            positions[f"{name} fused"].append(_position([r.item_id for r in ranked], case.target))
            llm = np.array([r.llm_score for r in ranked])
            order = [ranked[k].item_id for k in np.argsort(-zscore(llm), kind="stable")]
            positions[f"{name} llm-only"].append(_position(order, case.target))
    rows = {k: _summary(v) for k, v in positions.items()}
    best_prompted = max(rows["zero-shot llm-only"]["ndcg@10"], rows["few-shot llm-only"]["ndcg@10"])
    report = {
        "adapter": adapter, "base_model": meta["base_model"], "dataset": settings.dataset,
        "split": "test (leave-one-out, last item)", "candidates": n, "fusion_weight": w,
        "prompted_fusion_weight": settings.llm_weight, "users": len(cases),
        "honest_users": len(honest), "chance_ndcg@10": chance_ndcg(n), "rankers": rows,
        "lora_over_best_prompted": rows["lora llm-only"]["ndcg@10"] / best_prompted
        if best_prompted else math.inf,
        "fused_minus_retriever": rows["lora fused"]["ndcg@10"] - rows["retriever"]["ndcg@10"],
        "wall_time_s": time.perf_counter() - t0,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_report.json").write_text(json.dumps(report, indent=1))
    (out / "finetune_report.md").write_text(markdown(report))
    log(markdown(report))
    return report


def markdown(r: dict) -> str:
    lines = [f"# Fine-tuning: {r['adapter']} on {r['dataset']} ({r['split']})", "",
             f"{r['honest_users']} of {r['users']} test users have their target among the "
             f"retriever's top {r['candidates']} (the honest subset); chance NDCG@10 there is "
             f"{r['chance_ndcg@10']:.4f}. Fusion weight {r['fusion_weight']:g} (LoRA, tuned on "
             f"validation users), {r['prompted_fusion_weight']:g} (prompted, the agent's default).",
             "", "| ranker | NDCG@10 | HR@1 |", "|---|---|---|"]
    for name, row in r["rankers"].items():
        lines.append(f"| {name} | {row['ndcg@10']:.4f} | {row['hr@1']:.4f} |")
    lines += ["", f"LoRA LLM-only / best prompted LLM-only: {r['lora_over_best_prompted']:.2f}x "
              "(target 1.3x).",
              f"LoRA fused minus retriever: {r['fused_minus_retriever']:+.4f} NDCG@10 "
              "(target > 0).", ""]
    return "\n".join(lines)
