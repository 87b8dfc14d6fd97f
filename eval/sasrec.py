"""The ``sasrec`` baseline: the agent's own SASRec (``agent.models.sasrec``), trained on
the split's training histories and early-stopped on its validation targets."""

from __future__ import annotations

import numpy as np

from agent.models.sasrec import SASRec, SASRecConfig, left_pad, train_sasrec  # noqa: F401
from eval.systems import ScoringSystem


class SASRecSystem(ScoringSystem):
    name = "sasrec"

    def __init__(self, catalog, model: SASRec):
        super().__init__(catalog)
        self.model, self.cfg, self.info = model, model.cfg, model.info

    def scores(self, case) -> np.ndarray:
        return self.model.scores(case.history)

    def rank_many(self, cases, k: int) -> list[list[int]]:
        """Top ``k`` for many cases in batched forward passes."""
        return self.model.rank_many([c.history for c in cases], k, self.valid)

    @classmethod
    def train(cls, catalog, split, cfg: SASRecConfig | None = None, log=print,
              probe_users: int = 1000, seed: int = 0) -> SASRecSystem:
        """Train on each user's training history (validation and test items excluded);
        early stopping reads the validation targets of up to ``probe_users`` users."""
        rng = np.random.default_rng(seed)
        probe = split.valid if len(split.valid) <= probe_users else \
            [split.valid[i] for i in rng.choice(len(split.valid), probe_users, replace=False)]
        valid = np.zeros(catalog.max_id + 1, dtype=bool)
        valid[list(catalog.items)] = True
        model = train_sasrec([c.history for c in split.valid], catalog.max_id + 1,
                             [(c.history, c.target) for c in probe], cfg, valid, log)
        return cls(catalog, model)
