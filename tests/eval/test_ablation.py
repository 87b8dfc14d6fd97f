"""``eval.ablation``'s feature drops: a group goes as one."""

import numpy as np

from agent.rank.fusion import Example, feature_names
from eval.ablation import drop_feature


def blanked(e: Example) -> set[str]:
    F = feature_names()
    return {f for f in F if np.isnan(e.X[:, F.index(f)]).all()}


def test_dropping_ease_blanks_its_recent_scores_too_and_nothing_else():
    F = feature_names()
    e = Example([1, 2], np.ones((2, len(F)), dtype=np.float32), 1, user=7)
    assert blanked(drop_feature(e, "ease")) == {"ease", "ease_last1", "ease_last5",
                                                "ease_last20"}
    assert blanked(drop_feature(e, "popularity_vs_history")) == {"popularity_vs_history",
                                                                 "history_popularity"}
    assert blanked(drop_feature(e, "year")) == {"year"}
    assert not np.isnan(e.X).any() and drop_feature(e, "year").user == 7  # a copy
