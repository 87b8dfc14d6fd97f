"""Several trainings of one sequence model, scoring as one.

Two SASRec runs that differ only in their seed start from other weights and see the
batches in another order, so they err on different users; the sequential source can
read the mean of their log-probabilities (``TAILOR_SASREC_MODELS``; what it adds, by
dataset: README, "Two stages", run J). The agent's sequential source and the fusion
read an ensemble exactly as they read one model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from agent.models.sasrec import NextItemScorer, SASRecConfig


def member_configs(cfg: SASRecConfig, n: int) -> list[SASRecConfig]:
    """The configs of an ``n``-model ensemble: ``cfg`` with seeds ``cfg.seed``, +1, ...

    >>> [c.seed for c in member_configs(SASRecConfig(seed=3), 2)]
    [3, 4]
    """
    if n < 1:
        raise ValueError(f"an ensemble needs at least one model, not {n}")
    return [replace(cfg, seed=cfg.seed + k) for k in range(n)]


class SequenceEnsemble(NextItemScorer):
    """The mean of its members' next-item log-probabilities: a log-softmax of each
    member's scores, so a member whose logits sit higher overall does not outvote the
    others (a softmax is blind to such a shift; a mean of raw scores is not)."""

    def __init__(self, members: Sequence[NextItemScorer]):
        if not members:
            raise ValueError("an ensemble needs at least one model")
        sizes = {m.n_items for m in members}
        if len(sizes) != 1:
            raise ValueError(f"ensemble members score different catalogs: {sorted(sizes)} items")
        self.members = list(members)
        self.cfg, self.n_items = members[0].cfg, members[0].n_items
        self.info = {"members": [m.info for m in members]}

    def scores_many(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        total = np.zeros((len(histories), self.n_items))
        for member in self.members:
            s = member.scores_many(histories)
            top = s.max(axis=1, keepdims=True)
            total += s - top - np.log(np.exp(s - top).sum(axis=1, keepdims=True))
        return total / len(self.members)


def one_or_ensemble(members: Sequence[NextItemScorer]) -> NextItemScorer:
    """A single model as itself (its raw scores, as before ensembles), else the ensemble."""
    return members[0] if len(members) == 1 else SequenceEnsemble(members)


# --- the agent's sequential source: settings.sasrec_models trainings, cached ------------
def agent_configs(settings, catalog) -> list[SASRecConfig]:
    """The configs of the agent's sequence models for ``catalog``: ``config_for``'s,
    with seeds 0.. for ``settings.sasrec_models`` trainings (1 when unset)."""
    from agent.models.sasrec import config_for

    return member_configs(config_for(settings, catalog), getattr(settings, "sasrec_models", 1))


def prepare_sequential(settings, catalog, log=print, warm: Sequence = ()) -> list[Path]:
    """The cached folders of the agent's sequence models, each trained now if missing
    (from the matching ``warm`` model when given: ``train_sasrec``)."""
    from agent.models.sasrec import prepare_sasrec

    cfgs = agent_configs(settings, catalog)
    warm = list(warm) + [None] * (len(cfgs) - len(warm))
    return [prepare_sasrec(settings, catalog, log, cfg, start) for cfg, start in zip(cfgs, warm)]


def sequential_dirs(settings, catalog) -> list[Path] | None:
    """The folders of the agent's trained sequence models; None while any is missing."""
    from agent.models.sasrec import sasrec_dir

    found = [sasrec_dir(settings, catalog, cfg) for cfg in agent_configs(settings, catalog)]
    return None if None in found else found


def find_sequential(settings, catalog) -> NextItemScorer | None:
    """The agent's sequential source: its one model or its ensemble; None untrained."""
    from agent.models.sasrec import SASRec

    found = sequential_dirs(settings, catalog)
    return one_or_ensemble([SASRec.load(f) for f in found]) if found else None
