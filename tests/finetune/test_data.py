import numpy as np
import pytest

from agent.data.catalog import Catalog
from agent.rank.verbalizer import LABELS
from agent.types import Candidate
from agent.understand.state import satisfies
from eval.protocols import leave_one_out, make_split
from finetune import data as D
from tests.conftest import tiny_items

# Six users with eight items each: training history = the first six (cut points 3..5),
# validation = the seventh, test = the eighth.
HISTORIES = {1: [1, 2, 3, 11, 7, 12, 8, 9], 2: [5, 10, 4, 6, 3, 1, 2, 11],
             3: [11, 1, 7, 3, 12, 2, 6, 8], 4: [2, 8, 9, 1, 3, 4, 12, 5],
             5: [3, 6, 4, 1, 11, 8, 10, 7], 6: [7, 12, 1, 11, 2, 3, 9, 4]}


def history_catalog() -> Catalog:
    rows = [(u, i, t) for u, items in HISTORIES.items() for t, i in enumerate(items)]
    u, i, t = (np.array(x) for x in zip(*rows))
    return Catalog(tiny_items(), {}, u.astype(np.int32), i.astype(np.int32), t.astype(np.int64),
                   head=set())


class EveryItemRetriever:
    """Every item that fits the state, most co-watched with the liked ones first: a
    retriever that always finds the target, so every cut point yields an example."""

    def __init__(self, catalog, calls):
        self.catalog, self.calls = catalog, calls

    def retrieve(self, state, n):
        self.calls.append((self.catalog, state))
        seen = set(state.liked) | set(state.shown)
        co = dict(self.catalog.cowatched_with(state.liked, 100))
        ids = [i for i in self.catalog.items if i not in seen and satisfies(self.catalog.get(i), state)]
        ids.sort(key=lambda i: (-co.get(i, 0.0), i))
        return [Candidate(i, 1.0 / (k + 1), ("cowatch",)) for k, i in enumerate(ids[:n])]


def build(chat_share=0.0, snapshots=3, n=12):
    calls = []
    cat = history_catalog()
    examples = D.training_examples(cat, lambda c: EveryItemRetriever(c, calls), n, snapshots,
                                   chat_share, seed=0, progress=False)
    return cat, examples, calls


def test_training_examples_never_train_on_or_count_heldout_items():
    cat, examples, calls = build()
    _, valid, test = leave_one_out(cat)
    assert len(examples) == 3 * 6  # every user, every snapshot (the retriever always finds it)
    D.assert_no_heldout_leak(examples, valid, test)
    for ex in examples:
        train = HISTORIES[ex.user][:-2]
        assert ex.target in train[D.MIN_HISTORY:]
    # No snapshot's statistics contain a held-out interaction...
    for snap, _ in calls:
        pairs = set(zip(snap.user.tolist(), snap.item.tolist()))
        assert not pairs & ({(u, v) for u, v in valid.items()} | {(u, t) for u, t in test.items()})
    # ...nor the target of its own cut point (nor anything after it).
    for (snap, state), ex in zip(calls, examples):
        pairs = set(zip(snap.user.tolist(), snap.item.tolist()))
        assert (ex.user, ex.target) not in pairs
        assert set(state.liked) <= {i for u, i in pairs if u == ex.user}


def test_the_leak_check_fails_on_a_planted_leak():
    cat, examples, _ = build()
    _, valid, test = leave_one_out(cat)
    ex = examples[0]
    leaked = D.Example(ex.user, ex.kind, (test[ex.user],) + ex.candidates[1:], ex.retrieval,
                       ex.popularity, 0, ex.messages)
    with pytest.raises(AssertionError, match="held-out"):
        D.assert_no_heldout_leak([leaked], valid, test)


def test_examples_use_the_agents_prompt_with_lettered_candidates():
    from prompts import load_prompt

    cat, examples, _ = build()
    ex = examples[0]
    assert ex.messages[0]["content"] == load_prompt("rank_system").text
    assert len(ex.messages) == 2  # zero-shot: the adapter is served without demonstrations
    lines = [l for l in ex.messages[1]["content"].splitlines() if l[:2] in
             {f"{x}." for x in LABELS}]
    assert len(lines) == len(ex.candidates)
    assert lines[ex.answer].startswith(f"{LABELS[ex.answer]}. ")


def test_chat_examples_state_a_fact_the_target_has():
    cat, examples, calls = build(chat_share=1.0)
    assert examples and all(ex.kind == "chat" for ex in examples)
    for (_, state), ex in zip(calls, examples):
        assert state.query and (state.genres or state.year_min is not None)
        assert satisfies(cat.get(ex.target), state)
        assert 1 <= len(state.liked) <= 3


def test_heldout_examples_keep_only_users_whose_target_was_retrieved():
    cat = history_catalog()
    split = make_split(cat)

    class FirstTwo:
        def retrieve(self, state, n):
            return [Candidate(i, 1.0, ("x",)) for i in (9, 11)][:n]

    got = D.heldout_examples(split, split.test, FirstTwo(), 2)
    assert {ex.user for ex in got} == {u for u, items in HISTORIES.items() if items[-1] in (9, 11)}
    assert all(ex.target == HISTORIES[ex.user][-1] for ex in got)


def make_example(answer, n=3, pops=None):
    return D.Example(0, "history", tuple(range(n)), tuple(float(n - k) for k in range(n)),
                     tuple(pops or [10] * n), answer, ())


def test_trivial_heuristics_are_scored_exactly():
    assert D.position_ndcg(0) == 1.0 and D.position_ndcg(2) == pytest.approx(0.5)
    assert D.position_ndcg(10) == 0.0
    ex = make_example(0, pops=[30, 20, 10])
    assert D.heuristic_ndcg([ex], "retriever") == 1.0
    assert D.heuristic_ndcg([ex], "reverse") == pytest.approx(0.5)
    assert D.heuristic_ndcg([ex], "least_popular") == pytest.approx(0.5)
    assert D.chance_ndcg(3) == pytest.approx((1 + 1 / np.log2(3) + 0.5) / 3)
    with pytest.raises(ValueError):
        D.heuristic_ndcg([ex], "oracle")


def test_snapshot_cuts_fall_in_the_later_half_and_leave_min_history():
    train = {1: list(range(10)), 2: list(range(4)), 3: list(range(3))}
    for cuts in D.snapshot_cuts(train, 20, seed=1):
        assert 5 <= cuts[1] <= 9 and cuts[2] == 3 and 3 not in cuts


def test_examples_round_trip_through_jsonl(tmp_path):
    _, examples, _ = build()
    D.save_examples(tmp_path / "x.jsonl", examples)
    assert D.load_examples(tmp_path / "x.jsonl") == examples
    assert D.examples_hash(examples) == D.examples_hash(D.load_examples(tmp_path / "x.jsonl"))


def test_feedback_likes_become_extra_user_histories_for_training():
    cat = history_catalog()
    feedback = [{"session_id": "s1", "item_id": i, "value": "like", "at": float(t)}
                for t, i in enumerate([5, 10, 4, 6, 3, 1])] + \
               [{"session_id": "s1", "item_id": 2, "value": "dislike", "at": 9.0},
                {"session_id": "s2", "item_id": 99999, "value": "like", "at": 1.0}]
    aug = D.with_feedback(cat, feedback)
    new_user = int(cat.user.max()) + 1
    assert aug.meta["feedback_sessions"] == 1
    assert aug.item[aug.user == new_user].tolist() == [5, 10, 4, 6, 3, 1]  # likes only, in order
    assert len(aug.user) == len(cat.user) + 6
    calls = []
    examples = D.training_examples(aug, lambda c: EveryItemRetriever(c, calls), 12, 2, 0.0,
                                   seed=0, progress=False)
    assert any(ex.user == new_user for ex in examples)
    assert D.with_feedback(cat, []) is cat
