"""The ``tailor`` system: the agent's whole pipeline on a split — every candidate source
(``HybridRetriever.lists``, SASRec among them), the learned fusion (``agent.fusion``)
over their union, then the tail/diversity re-ranker at the agent's settings.

Leak-free training: the sources are fitted on the split's training interactions (each
user's history before the validation item), and the fusion learns to put the
validation item first among the candidates proposed from that history. Test cases then
read one item more of history (the validation item), as every system here does.
"""

from __future__ import annotations

import time

from tqdm import tqdm

from agent.fusion import (Example, FusionConfig, FusionRanker, feature_names,
                          known_user_example, recall, train_fusion)
from eval.protocols import Case
from eval.systems import PoolSystem

POOL = 50  # each source's list length, as in the agent


class TwoStage(PoolSystem):
    name = "tailor"

    def __init__(self, catalog, retriever, fusion: FusionRanker, reranker=None,
                 tail_boost: float = 0.0, rerank_depth: int = POOL, name: str = "tailor"):
        super().__init__(catalog)
        self.retriever, self.fusion, self.reranker = retriever, fusion, reranker
        self.tail_boost, self.rerank_depth, self.name = tail_boost, rerank_depth, name
        self._cache: dict[int, list[int]] = {}

    def example(self, case: Case) -> tuple[Example, dict]:
        """One case's candidates, their feature rows and the source lists."""
        return make_example(self.retriever, case, self.catalog)

    def rank_pool(self, case: Case) -> list[int]:
        if case.user not in self._cache:
            ex, _ = self.example(case)
            ranked = [i for i, _ in self.fusion.rank(ex.ids, ex.X)]
            if self.reranker is not None and self.tail_boost > 0:
                from eval.systems import _Entry

                top = [_Entry(i) for i in ranked[:self.rerank_depth]]
                ranked = [e.item_id for e in self.reranker.rerank(
                    top, tail_boost=self.tail_boost)] + ranked[self.rerank_depth:]
            self._cache[case.user] = ranked
        return self._cache[case.user]


def make_example(retriever, case: Case, catalog) -> tuple[Example, dict]:
    """The candidates the agent would propose for ``case``'s user, as a fusion example."""
    return known_user_example(retriever, case.history, case.target, catalog, POOL)


def source_recall(examples: list[Example], lists: list[dict], k: int = POOL) -> dict[str, float]:
    """Recall@k of each source and of their union (the candidates)."""
    sources = sorted({s for lst in lists for s in lst if s != "avoid"})
    out = {s: recall(examples, s, lists, k) for s in sources}
    out["union"] = recall(examples)
    return out


def train_two_stage(catalog, split, retriever, log=print, cfg: FusionConfig | None = None,
                    progress: bool = True) -> tuple[FusionRanker, dict]:
    """Fit the fusion on the split's validation targets; returns it and a report
    (recall@50 of each source and of the union on those users, training info)."""
    t0 = time.perf_counter()
    examples, lists = [], []
    for case in tqdm(split.valid, desc="tailor: candidates for validation users",
                     unit="user", disable=not progress, leave=False):
        ex, lst = make_example(retriever, case, catalog)
        examples.append(ex)
        lists.append(lst)
    recalls = source_recall(examples, lists)
    log("tailor: recall@50 on validation users: "
        + ", ".join(f"{s} {v:.3f}" for s, v in recalls.items()))
    fusion = train_fusion(examples, feature_names(), cfg, log)
    report = {"recall@50_valid": recalls, "fusion": fusion.info,
              "importances": fusion.importances(),
              "mean_candidates": sum(len(e.ids) for e in examples) / max(1, len(examples)),
              "build_s": time.perf_counter() - t0}
    return fusion, report
