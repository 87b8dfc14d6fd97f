"""The ``sasrec`` baseline: the agent's own SASRec (``agent.models.sasrec``), trained on
the split's training histories and early-stopped on its validation targets."""

from __future__ import annotations

import numpy as np

from agent.models.sasrec import (SASRec, SASRecConfig, checkpoint_path, left_pad,  # noqa: F401
                                 save_trained, train_sasrec)
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
              probe_users: int = 1000, seed: int = 0, cache_dir=None) -> SASRecSystem:
        """Train on each user's training history (validation and test items excluded);
        early stopping reads the validation targets of up to ``probe_users`` users.

        ``cache_dir``: a folder of models; a model trained on the same training
        interactions with the same config and probe is loaded from there, not retrained."""
        cfg = cfg or SASRecConfig()
        folder = None
        if cache_dir is not None:
            from agent.models.sasrec import CONFIG, model_key

            key = model_key(catalog, cfg) + f"-p{probe_users}-s{seed}"
            folder = cache_dir / f"eval-sasrec-{catalog.meta.get('dataset', 'data')}-{key}"
            if (folder / CONFIG).is_file():
                log(f"sasrec: the model trained on this split earlier ({folder})")
                return cls(catalog, SASRec.load(folder))
        rng = np.random.default_rng(seed)
        probe = split.valid if len(split.valid) <= probe_users else \
            [split.valid[i] for i in rng.choice(len(split.valid), probe_users, replace=False)]
        valid = np.zeros(catalog.max_id + 1, dtype=bool)
        valid[list(catalog.items)] = True
        model = train_sasrec([c.history for c in split.valid], catalog.max_id + 1,
                             [(c.history, c.target) for c in probe], cfg, valid, log,
                             checkpoint=folder and checkpoint_path(folder))
        if folder is not None:
            save_trained(model, folder)
        return cls(catalog, model)
