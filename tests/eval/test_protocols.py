import numpy as np

from agent.data.catalog import Catalog
from eval.protocols import leave_one_out, make_split, sample_users
from tests.conftest import tiny_items


def make_catalog():
    # user 1: 1,2,3,4,5 ; user 2: 3,1,6,7,8,9 ; user 3 too short (3 items) to evaluate
    rows = [(1, i, t) for t, i in enumerate([1, 2, 3, 4, 5])] + \
           [(2, i, t) for t, i in enumerate([3, 1, 6, 7, 8, 9])] + \
           [(3, i, t) for t, i in enumerate([1, 2, 3])]
    u, i, t = (np.array(x) for x in zip(*rows))
    return Catalog(tiny_items(), {}, u.astype(np.int32), i.astype(np.int32), t, head=set())


def test_leave_one_out_by_time():
    train, valid, test = leave_one_out(make_catalog())
    assert train == {1: [1, 2, 3], 2: [3, 1, 6, 7]}
    assert valid == {1: 4, 2: 8} and test == {1: 5, 2: 9}


def test_split_never_counts_validation_or_test_interactions():
    split = make_split(make_catalog(), n_negatives=3, seed=1)
    cat = split.train_catalog
    pairs = set(zip(cat.user.tolist(), cat.item.tolist()))
    assert (1, 4) not in pairs and (1, 5) not in pairs and (2, 9) not in pairs
    assert cat.get(5).popularity == 0  # only ever a test target
    assert cat.cowatch[5].nnz == 0
    test = {c.user: c for c in split.test}
    assert test[1].history == (1, 2, 3, 4) and test[1].target == 5  # validation item is history
    assert {c.user: c.history for c in split.valid}[1] == (1, 2, 3)
    for c in split.test:
        assert len(c.negatives) == 3
        assert not set(c.negatives) & (set(c.history) | {c.target})


def test_user_sample_is_fixed_by_seed():
    cases = make_split(make_catalog()).test * 10
    a, b = sample_users(cases, 5, seed=3), sample_users(cases, 5, seed=3)
    assert a == b and len(a) == 5
    assert sample_users(cases, None, 0) == cases
