"""The sequence ensemble: several SASRec trainings scoring as one."""

import numpy as np
import pytest

from agent.models.ensemble import SequenceEnsemble, member_configs, one_or_ensemble
from agent.models.sasrec import NextItemScorer, SASRecConfig


class Fixed(NextItemScorer):
    """Scores from a table: the same row for any history."""

    def __init__(self, row, seed=0):
        self.row, self.n_items = np.asarray(row, dtype=float), len(row)
        self.cfg, self.info = SASRecConfig(seed=seed), {"seed": seed}

    def scores_many(self, histories):
        return np.tile(self.row, (len(histories), 1))


def log_softmax(row):
    row = np.asarray(row, dtype=float)
    return row - np.log(np.exp(row).sum())


def test_the_ensemble_scores_the_mean_log_probability_of_its_members():
    a, b = [0.0, 1.0, 2.0, 3.0], [0.0, 30.0, 0.0, 10.0]
    got = SequenceEnsemble([Fixed(a), Fixed(b, 1)]).scores([1])
    assert np.allclose(got, (log_softmax(a) + log_softmax(b)) / 2)
    # A member whose logits are all shifted (a softmax sees no difference) shifts
    # nothing, where a mean of raw scores would let it outvote the other.
    shifted = SequenceEnsemble([Fixed(np.add(a, 100.0)), Fixed(b, 1)]).scores([1])
    assert np.allclose(shifted, got)


def test_the_ensemble_ranks_unseen_valid_items_like_one_model():
    ensemble = SequenceEnsemble([Fixed([0, 4, 3, 2, 1]), Fixed([0, 4, 3, 2, 1], 1)])
    valid = np.array([False, True, True, True, False])
    assert ensemble.rank_many([[2]], 3, valid) == [[1, 3]]


def test_one_model_is_used_as_itself_and_members_must_agree():
    single = Fixed([0, 1, 2])
    assert one_or_ensemble([single]) is single
    assert isinstance(one_or_ensemble([single, Fixed([0, 2, 1])]), SequenceEnsemble)
    with pytest.raises(ValueError, match="different catalogs"):
        SequenceEnsemble([Fixed([0, 1]), Fixed([0, 1, 2])])
    with pytest.raises(ValueError, match="at least one"):
        member_configs(SASRecConfig(), 0)
    assert [c.seed for c in member_configs(SASRecConfig(), 3)] == [0, 1, 2]


def test_the_setting_bounds_the_trainings(tmp_path):
    from agent.errors import ConfigError
    from agent.settings import Settings

    with pytest.raises(ConfigError, match="sasrec_models must be 1 to 8"):
        Settings(home=tmp_path, sasrec_models=0)
