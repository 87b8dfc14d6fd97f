"""EASE: the closed-form item-item model the fusion reads as a feature."""

import numpy as np

from agent.models.ease import fit_ease


def interactions(pairs):
    user, item = zip(*pairs)
    return np.array(user), np.array(item)


def test_items_bought_together_score_each_other_and_a_history_never_scores_itself():
    # Items 1 and 2 always go together; 3 goes with anything; 4 only with 3.
    pairs = [(u, 1) for u in range(6)] + [(u, 2) for u in range(6)]
    pairs += [(u, 3) for u in range(0, 10)] + [(u, 4) for u in range(6, 10)]
    model = fit_ease(*interactions(pairs), n_items=5, lam=1.0)
    s = model.scores([1])
    assert s[2] > s[4] and s[2] > 0.5
    assert s[1] == 0.0  # the diagonal is held at zero
    assert model.scores([4])[3] > model.scores([4])[2]


def test_weights_match_the_closed_form():
    rng = np.random.default_rng(0)
    X = (rng.random((40, 7)) < 0.3).astype(np.float64)
    users, items = np.nonzero(X)
    lam = 3.0
    model = fit_ease(users, items, 7, lam=lam)
    P = np.linalg.inv(X.T @ X + lam * np.eye(7))
    B = np.eye(7) - P / np.diag(P)
    np.testing.assert_allclose(model.weights, B, atol=1e-5)
    np.testing.assert_allclose(model.scores([0, 3]), B[0] + B[3], atol=1e-5)


def test_repeats_count_once_and_unknown_ids_are_ignored():
    once = fit_ease(*interactions([(0, 1), (0, 2), (1, 1)]), n_items=3, lam=1.0)
    twice = fit_ease(*interactions([(0, 1), (0, 1), (0, 2), (1, 1)]), n_items=3, lam=1.0)
    np.testing.assert_allclose(once.weights, twice.weights)
    np.testing.assert_allclose(once.scores([1, 99, -1]), once.scores([1]))
    assert not once.scores([99]).any()


def test_a_catalog_too_large_for_dense_weights_gets_none():
    assert fit_ease(*interactions([(0, 1), (0, 2)]), n_items=3, max_items=2) is None
