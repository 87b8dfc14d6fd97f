"""The ``tailor`` system: the agent's whole pipeline on a split — every candidate source
(``HybridRetriever.lists``, SASRec among them), the learned fusion (``agent.rank.fusion``)
over their union, then the tail/diversity re-ranker at the agent's settings.

Leak-free training: the fusion learns to put first each user's last ``HELD_OUT`` items
before the test item (the validation item among them), among the candidates that
sources fitted on the histories before those propose (a shadow SASRec among them).
The serving sources are fitted on the split's training interactions, and test cases
read one item more of history (the validation item), as every system here does.
"""

from __future__ import annotations

import time

import numpy as np

from agent.rank.fusion import (Example, FusionConfig, FusionRanker, blank_models,
                               feature_names, known_user_example, recall, train_fusion_pair)
from agent.rank.shadow import HELD_OUT, shadow_examples, shadow_models
from eval.protocols import Case
from eval.systems import PoolSystem

POOL = 50  # each source's list length, as in the agent


class TwoStage(PoolSystem):
    name = "tailor"

    def __init__(self, catalog, retriever, fusion: FusionRanker, reranker=None,
                 tail_boost: float = 0.0, rerank_depth: int = POOL, name: str = "tailor",
                 examples: dict | None = None, tail_floor: bool = False):
        """``examples``: a cache of candidates shared by the systems over one retriever
        (``tailor``, ``tailor:0``, ... and the ablation build each case's once).
        ``tail_floor``: the top 10 keep at least as many tail items as the sequence
        model's own top 10 (``agent.rank.rerank.tail_floor``)."""
        super().__init__(catalog)
        self.retriever, self.fusion, self.reranker = retriever, fusion, reranker
        self.tail_boost, self.rerank_depth, self.name = tail_boost, rerank_depth, name
        self.tail_floor = tail_floor
        self._cache: dict[int, list[int]] = {}
        self._examples = {} if examples is None else examples

    def example(self, case: Case) -> tuple[Example, dict]:
        """One case's candidates, their feature rows and the source lists."""
        key = (case.user, case.history, case.target)
        if key not in self._examples:
            self._examples[key] = make_example(self.retriever, case, self.catalog)
        return self._examples[key]

    def rank_pool(self, case: Case) -> list[int]:
        if case.user not in self._cache:
            ex, _ = self.example(case)
            fusion = self.fusion.for_evidence(len(case.history))
            scored = fusion.rank(ex.ids, blank_models(ex, fusion.features).X
                                 if fusion.blanks_models else ex.X)
            ranked = [i for i, _ in scored]
            if self.reranker is not None and self.tail_boost > 0:
                from eval.systems import _Entry

                top = [_Entry(i, v) for i, v in scored[:self.rerank_depth]]
                ranked = [e.item_id for e in self.reranker.rerank(
                    top, tail_boost=self.tail_boost)] + ranked[self.rerank_depth:]
            if self.tail_floor:
                ranked = floored(ranked, ex, self.catalog)
            self._cache[case.user] = ranked
        return self._cache[case.user]


def floored(ranked: list[int], example: Example, catalog, k: int = 10) -> list[int]:
    """``ranked`` with at least as many tail items in its first ``k`` as the sequence
    model's own first ``k`` among ``example``'s candidates."""
    from agent.rank.rerank import tail_floor
    from eval.tail_choice import sequence_top

    need = sum(catalog.is_tail(i) for i in sequence_top(example, k))
    return tail_floor(ranked, need, k, catalog.is_tail)


def make_example(retriever, case: Case, catalog) -> tuple[Example, dict]:
    """The candidates the agent would propose for ``case``'s user, as a fusion example
    (its recent popularity counted at the user's last training title)."""
    return known_user_example(retriever, case.history, case.target, catalog, POOL,
                              when=catalog.last_time(case.user))


def source_recall(examples: list[Example], lists: list[dict], k: int = POOL) -> dict[str, float]:
    """Recall@k of each source and of their union (the candidates)."""
    sources = sorted({s for lst in lists for s in lst if s != "avoid"})
    out = {s: recall(examples, s, lists, k) for s in sources}
    out["union"] = recall(examples)
    return out


def train_two_stage(catalog, split, retriever, log=print, cfg: FusionConfig | None = None,
                    progress: bool = True, cache_dir=None, sequential_for=None,
                    users: int | None = None) -> tuple[FusionRanker, dict, list[Example]]:
    """Fit the fusion on the last ``HELD_OUT`` items before each user's test item (the
    validation item among them), with sources fitted on the histories before those
    (``agent.rank.shadow.shadow_examples``); returns it, a report (recall@50 of each source
    and of the union on the validation items, training info) and the training cases.

    ``sequential_for(before, truncated, sequences)``: the shadow sequence model; by
    default a SASRec of the serving one's config, cached in ``cache_dir``.
    ``users``: learn from a fixed-seed sample of this many users' cases (a quick run;
    None: every user's)."""
    t0 = time.perf_counter()
    if sequential_for is None:
        sasrec = retriever.sasrec

        def sequential_for(before, truncated, sequences):
            if sasrec is None:
                return None
            cfgs = [m.cfg for m in getattr(sasrec, "members", [sasrec])]
            return shadow_models(before, truncated, sequences, cfgs, cache_dir,
                                 catalog.meta.get("dataset", "data"), log, progress)

    sequences = {c.user: [*c.history, c.target] for c in split.valid}
    sample = None
    if users is not None and users < len(sequences):
        rng = np.random.default_rng(0)
        sample = set(rng.choice(sorted(sequences), size=users, replace=False).tolist())
    examples, lists, last = shadow_examples(retriever, sequences, catalog, sequential_for,
                                            log=log, progress=progress, users=sample)
    on_valid = [i for i, is_last in enumerate(last) if is_last]
    recalls = source_recall([examples[i] for i in on_valid], [lists[i] for i in on_valid])
    log(f"tailor: recall@50 on validation items (sources fitted {HELD_OUT} items earlier): "
        + ", ".join(f"{s} {v:.3f}" for s, v in recalls.items()))
    fusion = train_fusion_pair(examples, feature_names(), cfg, log)
    report = {"recall@50_valid": recalls, "recall@50_train_cases": recall(examples),
              "train_cases": len(examples), "train_users": len({e.user for e in examples}),
              "held_out": HELD_OUT, "fusion": fusion.info,
              "importances": fusion.importances(),
              "mean_candidates": sum(len(e.ids) for e in examples) / max(1, len(examples)),
              "build_s": time.perf_counter() - t0}
    return fusion, report, examples
