import math

import numpy as np
import pytest

from agent.errors import ConfigError
from agent.rank.fusion import (
    Example, FusionConfig, FusionRanker, candidate_rows, feature_names, recall, train_fusion)

FEATURES = feature_names()
SIGNAL, NOISE = FEATURES.index("sequential_score"), FEATURES.index("year")


def planted(n_users: int, seed: int, n_candidates: int = 30) -> list[Example]:
    """Users whose next item has a higher ``sequential_score`` (plus noise) than the other
    candidates; ``year`` is pure noise and every other feature is missing."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n_users):
        ids = list(range(1000 * u, 1000 * u + n_candidates))
        X = np.full((n_candidates, len(FEATURES)), np.nan, dtype=np.float32)
        target = int(rng.integers(n_candidates))
        X[:, SIGNAL] = rng.normal(size=n_candidates) + 3.0 * (np.arange(n_candidates) == target)
        X[:, NOISE] = rng.normal(size=n_candidates)
        out.append(Example(ids, X, ids[target]))
    return out


def top1(fusion: FusionRanker, examples: list[Example]) -> float:
    return float(np.mean([fusion.rank(e.ids, e.X)[0][0] == e.target for e in examples]))


def test_the_fusion_learns_a_planted_signal_and_gives_noise_little_weight():
    fusion = train_fusion(planted(300, 0), FEATURES, FusionConfig(), log=lambda m: None)
    fresh = planted(200, 1)
    # The signal alone puts the target first for ~2/3 of users (3 sd over 29 draws);
    # a random order would for 1/30.
    assert top1(fusion, fresh) > 0.55
    imp = fusion.importances()
    assert imp["sequential_score"] > 0.7 and imp["year"] < 0.2
    assert imp["cowatch_rank"] == 0.0  # all missing: never split on
    assert math.isclose(sum(imp.values()), 1.0)


def test_training_is_deterministic_and_a_saved_model_scores_the_same(tmp_path):
    a = train_fusion(planted(120, 0), FEATURES, log=lambda m: None)
    b = train_fusion(planted(120, 0), FEATURES, log=lambda m: None)
    X = planted(5, 3)[0].X
    assert np.array_equal(a.score(X), b.score(X))
    a.save(tmp_path / "fusion")
    c = FusionRanker.load(tmp_path / "fusion")
    assert c.features == FEATURES and np.array_equal(a.score(X), c.score(X))
    assert c.info["train_cases"] + c.info["valid_cases"] == 120
    assert len(c.boosters) == FusionConfig().bag and len(c.info["best_rounds"]) == len(c.boosters)


def test_the_boosters_are_averaged_and_each_one_counts():
    cfg = FusionConfig(bag=3)
    fusion = train_fusion(planted(120, 0), FEATURES, cfg, log=lambda m: None)
    X = planted(5, 3)[0].X
    each = [b.predict(X) for b in fusion.boosters]
    assert np.allclose(fusion.score(X), np.mean(each, axis=0))
    assert not np.allclose(each[0], each[1])  # other held-out users, another model
    one = FusionRanker(fusion.boosters[:1], FEATURES)
    assert not np.allclose(one.score(X), fusion.score(X))


def test_early_stopping_holds_out_whole_users():
    from agent.rank.fusion import _held_out

    examples = planted(200, 0)
    for k, e in enumerate(examples):
        e.user = k // 5  # 40 users with 5 cases each
    train, valid = _held_out(examples, 0.2, np.random.default_rng(0))
    assert len(train) + len(valid) == 200 and len(valid) == 40
    assert not {e.user for e in train} & {e.user for e in valid}
    examples[0].user = None  # users not all known: a share of the cases instead
    train, valid = _held_out(examples, 0.2, np.random.default_rng(0))
    assert len(valid) == 40 and {e.user for e in train} & {e.user for e in valid}


def test_a_model_refuses_rows_of_another_feature_list():
    fusion = train_fusion(planted(60, 0), FEATURES, log=lambda m: None)
    with pytest.raises(ConfigError, match="retrain"):
        fusion.score(np.zeros((3, len(feature_names(llm=True))), dtype=np.float32))


def test_too_few_users_with_their_target_among_the_candidates_is_a_clear_error():
    examples = [Example([1, 2], np.zeros((2, len(FEATURES)), np.float32), 9)] * 50
    with pytest.raises(ConfigError, match="0 training users"):
        train_fusion(examples, FEATURES)


def test_candidate_rows_hold_each_sources_rank_and_score(catalog):
    lists = {"cowatch": [(3, 0.9), (8, 0.5)], "semantic": [(8, 0.7), (12, 0.2)],
             "avoid": [(6, 1.0), (3, 0.4)]}
    ids, X = candidate_rows(lists, catalog, history_len=4, rrf={3: 0.5, 8: 0.25})
    assert ids == [3, 8, 12]  # the union in first-seen order; "avoid" proposes nothing
    col = {f: X[:, k] for k, f in enumerate(FEATURES)}
    assert list(col["cowatch_rank"][:2]) == [0, 1] and math.isnan(col["cowatch_rank"][2])
    assert col["semantic_score"][1] == pytest.approx(0.7) and math.isnan(col["semantic_rank"][0])
    assert col["avoid_rank"][0] == 1 and math.isnan(col["avoid_rank"][1])
    assert list(col["n_sources"]) == [1, 2, 1]
    assert col["rrf"][0] == 0.5 and math.isnan(col["rrf"][2])
    assert list(col["tail"]) == [0.0, 1.0, 1.0]  # 3 is a head item in the fixture
    assert col["log_popularity"][0] == pytest.approx(math.log1p(95))
    assert list(col["year"]) == [1991, 1995, 1995] and set(col["history_len"]) == {4}
    _, with_llm = candidate_rows(lists, catalog, 4, llm={8: 0.8})
    assert with_llm.shape[1] == len(FEATURES) + 1 and with_llm[1, -1] == pytest.approx(0.8)


def test_recall_of_the_union_and_of_one_source():
    examples = [Example([1, 2, 3], np.zeros((3, 1)), 3), Example([4, 5], np.zeros((2, 1)), 9)]
    lists = [{"cowatch": [(3, 1.0)], "semantic": [(1, 1.0)]}, {"cowatch": [(4, 1.0)]}]
    assert recall(examples) == 0.5
    assert recall(examples, "cowatch", lists) == 0.5
    assert recall(examples, "semantic", lists) == 0.0
    assert recall(examples, "cowatch", lists, k=0) == 0.0


def test_candidate_rows_take_the_whole_catalog_models_columns_by_name(catalog):
    lists = {"cowatch": [(3, 0.9), (8, 0.5)]}
    asked = []

    def models(ids):
        asked.append(list(ids))
        return {"ease": np.array([0.25, 0.5]), "sequential_logp": np.array([-1.0, -2.0])}

    ids, X = candidate_rows(lists, catalog, 4, models=models)
    assert asked == [ids] == [[3, 8]]
    col = {f: X[:, k] for k, f in enumerate(FEATURES)}
    assert list(col["ease"]) == [0.25, 0.5] and list(col["sequential_logp"]) == [-1.0, -2.0]
    assert np.isnan(col["sequential_gap"]).all()  # a column the models left out


def test_the_fusion_pair_has_a_twin_without_model_columns_and_saves_it(tmp_path):
    from agent.rank.fusion import MODEL_FEATURES, SHORT_EVIDENCE, train_fusion_pair

    examples = planted(120, 0)
    gap = FEATURES.index("sequential_gap")
    for e in examples:  # the signal moves to a model column
        e.X[:, gap], e.X[:, SIGNAL] = e.X[:, SIGNAL], np.nan
    fusion = train_fusion_pair(examples, FEATURES, log=lambda m: None)
    assert fusion.short is not None and fusion.short.blanks_models and not fusion.blanks_models
    assert fusion.for_evidence(SHORT_EVIDENCE - 1) is fusion.short
    assert fusion.for_evidence(SHORT_EVIDENCE) is fusion
    assert fusion.importances()["sequential_gap"] > 0
    assert all(fusion.short.importances()[f] == 0.0 for f in MODEL_FEATURES)
    fusion.save(tmp_path / "f")
    back = FusionRanker.load(tmp_path / "f")
    X = examples[0].X
    assert back.short.blanks_models and np.array_equal(back.short.score(X), fusion.short.score(X))
    assert np.array_equal(back.score(X), fusion.score(X)) and back.short.short is None
