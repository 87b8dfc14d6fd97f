"""``llm-feature``: is the LLM verbalizer's score worth a column of the learned fusion?

Two fusions learn from the same fixed-seed sample of the ``tailor`` system's training
cases (whole users, ``CASES`` by default, since each LLM score costs a forward pass):
``llm-feature-off`` without the LLM column, ``llm-feature`` with it. Both rank by the
fusion alone (no tail re-ranker) and report on the same users (``--llm-users``).

The LLM scores the top ``n_llm`` candidates of the fusion without the column, as serving
would show them to it. For a training case that fusion was fitted on the other half of
the users (out of fold), and the prompt is written from the catalog as it stood before
the case's target (the shadow catalog the case's sources were fitted on). The column is
the calibrated label log-probability, z-scored within the prompt; a candidate the LLM
did not see gets NaN, which LightGBM routes on a branch of its own. At test time the
"off" fusion's top ``n_llm`` are scored, then the fusion with the column ranks all.
"""

from __future__ import annotations

import time

import numpy as np

from agent.rank.fusion import Example, FusionConfig, feature_names, train_fusion
from eval.systems import PoolSystem, case_state

CASES = 1000  # training cases scored by the LLM, at least (whole users are taken)
BATCH = 64  # prompts per rank_many call (concurrent requests a vLLM server batches)


def llm_column(ranker, requests, progress: bool = False, desc: str = "") -> list[dict]:
    """For each ``(state, candidates)``: the LLM's z-scored, calibrated label
    log-probability of every candidate it saw (``ranker.n_llm`` of them)."""
    from tqdm import tqdm

    from agent.rank.verbalizer import zscore

    out = []
    bar = tqdm(total=len(requests), desc=desc or "llm feature", unit="prompt",
               disable=not progress or not requests, leave=False)
    for start in range(0, len(requests), BATCH):
        for ranked in ranker.rank_many(requests[start:start + BATCH]):
            seen = [r for r in ranked if r.llm_score is not None]
            z = zscore(np.array([r.llm_score for r in seen], dtype=float))
            out.append({r.item_id: float(v) for r, v in zip(seen, z)})
        bar.update(len(requests[start:start + BATCH]))
    bar.close()
    return out


def with_column(example: Example, column: dict[int, float]) -> Example:
    """``example`` with the LLM column appended (NaN for candidates not scored)."""
    col = np.array([column.get(i, np.nan) for i in example.ids], dtype=np.float32)[:, None]
    return Example(example.ids, np.hstack([example.X, col]), example.target, example.user)


def head(fusion, example: Example, n: int) -> list:
    """The fusion's first ``n`` candidates of ``example``, as the ranker's input."""
    from agent.types import Candidate

    return [Candidate(i, s, ("fusion",)) for i, s in fusion.rank(example.ids, example.X)[:n]]


def sample_cases(examples: list[Example], n: int, seed: int = 0) -> list[int]:
    """Indices of the cases of a fixed-seed sample of users, whole users, until at least
    ``n`` cases (all when there are fewer).

    >>> ex = [Example([1], np.zeros((1, 1)), 1, u) for u in (1, 1, 2, 2, 3)]
    >>> sorted(sample_cases(ex, 3)) in ([0, 1, 2, 3], [0, 1, 4], [2, 3, 4])
    True
    """
    users = sorted({e.user for e in examples})
    np.random.default_rng(seed).shuffle(users)
    by_user: dict = {}
    for k, e in enumerate(examples):
        by_user.setdefault(e.user, []).append(k)
    chosen: list[int] = []
    for u in users:
        if len(chosen) >= n:
            break
        chosen += by_user[u]
    return chosen


def out_of_fold_heads(examples: list[Example], n: int, cfg: FusionConfig, seed: int = 0,
                      log=print) -> list[list]:
    """Each example's top ``n`` by a fusion fitted on the other half of the users."""
    from agent.types import Candidate
    from eval.tail_choice import out_of_fold

    return [[Candidate(i, s, ("fusion",)) for i, s in ranked[:n]]
            for ranked in out_of_fold(examples, cfg, seed, log)]


def train_llm_feature(base, split, ranker_for, cases: int = CASES, seed: int = 0, log=print,
                      progress: bool = True, cfg: FusionConfig | None = None):
    """The two fusions over ``base`` (a trained ``tailor`` system: its training cases and
    candidates); ``ranker_for(catalog)`` makes the LLM ranker over a catalog. Returns
    ``(off, with_llm, report)``."""
    from agent.data.catalog import catalog_from_histories
    from agent.rank.shadow import HELD_OUT, shadow_split
    from agent.understand.state import known_user_state

    t0, cfg = time.perf_counter(), cfg or FusionConfig()
    sequences = {c.user: [*c.history, c.target] for c in split.valid}
    truncated, all_cases = shadow_split(sequences, HELD_OUT)
    users = {e.user for e in base.train_examples}
    shadow_cases = [c for c in all_cases if c[0] in users]
    if [(u, t) for u, _, t in shadow_cases] != [(e.user, e.target) for e in base.train_examples]:
        raise RuntimeError("the tailor system's training cases are not the shadow split's")
    chosen = sample_cases(base.train_examples, cases, seed)
    train = [base.train_examples[k] for k in chosen]
    histories = [shadow_cases[k][1] for k in chosen]
    before = catalog_from_histories(split.train_catalog, truncated,
                                    f"fusion training: last {HELD_OUT} items held out")
    ranker = ranker_for(before)
    heads = out_of_fold_heads(train, ranker.n_llm, cfg, seed, log)
    columns = llm_column(ranker, [(known_user_state(h), hd)
                                              for h, hd in zip(histories, heads)],
                         progress, "llm feature: training cases")
    off = train_fusion(train, feature_names(), cfg, log)
    on = train_fusion([with_column(e, c) for e, c in zip(train, columns)],
                      feature_names(llm=True), cfg, log)
    report = {"cases": len(train), "users": len({e.user for e in train}), "n_llm": ranker.n_llm,
              "importance_llm": on.importances().get("llm"),
              "importances": on.importances(), "train_s": time.perf_counter() - t0}
    log(f"llm-feature: {len(train)} cases of {report['users']} users scored by the LLM; "
        f"the column's share of the fusion's gain {report['importance_llm']:.3f}")
    return off, on, report


class LLMFeature(PoolSystem):
    """The fusion with the LLM column, over the off fusion's top ``n_llm``."""

    name = "llm-feature"

    def __init__(self, base, off, fusion, ranker, report: dict):
        super().__init__(base.catalog)
        self.base, self.off, self.fusion, self.ranker = base, off, fusion, ranker
        self.report = report
        self._cache: dict[int, list[int]] = {}

    def prepare(self, cases, progress: bool = True) -> None:
        todo = list({c.user: c for c in cases if c.user not in self._cache}.values())
        examples = [self.base.example(c)[0] for c in todo]
        columns = llm_column(self.ranker, [(case_state(c), head(self.off, e, self.ranker.n_llm))
                                           for c, e in zip(todo, examples)],
                             progress, "llm-feature ranking")
        for c, e, col in zip(todo, examples, columns):
            scored = with_column(e, col)
            self._cache[c.user] = [i for i, _ in self.fusion.rank(scored.ids, scored.X)]

    def rank_pool(self, case) -> list[int]:
        if case.user not in self._cache:
            self.prepare([case], progress=False)
        return self._cache[case.user]
