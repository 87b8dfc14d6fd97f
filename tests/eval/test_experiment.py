import numpy as np
import pytest

from eval.experiment import evaluate_system
from eval.protocols import Case, Split
from eval.systems import ItemKNN, Popularity


class Fixed:
    """A system that returns a fixed list (to check metric plumbing by hand)."""

    name = "fixed"

    def __init__(self, ranked):
        self.ranked = ranked

    def rank(self, case, k):
        return self.ranked[:k]

    def rank_candidates(self, case, candidates):
        return sorted(candidates)


def split_for(catalog):
    return Split(catalog, [], [], tail={2, 4, 6, 7, 8, 9, 10, 12}, head_threshold=50)


def test_metrics_by_hand(catalog):
    case = Case(user=1, history=(1,), target=3, negatives=(5, 6))
    res = evaluate_system(Fixed([7, 3, 99, 7]), [case], split_for(catalog), progress=False)
    m = res.metrics
    assert m["hr@5"] == 1.0 and m["ndcg@5"] == pytest.approx(1 / np.log2(3))
    assert m["mrr@10"] == 0.5
    assert m["tail_share@5"] == pytest.approx(2 / 4)  # 7 twice is tail; 3 and 99 are not
    assert m["oov_rate@20"] == 0.25 and m["duplicates@20"] == 0.25
    assert m["coverage@5"] == pytest.approx(3 / 12)
    assert res.sampled_metrics["hr@5"] == 1.0  # sorted(3, 5, 6): target first
    assert res.per_user[1]["ndcg@5"] == m["ndcg@5"]
    assert res.slices["head_targets"]["n_users"] == 1


def test_baselines_never_recommend_history(catalog):
    case = Case(user=1, history=(1, 2, 3), target=8)
    for system in (Popularity(catalog), ItemKNN(catalog)):
        ranked = system.rank(case, 5)
        assert len(ranked) == 5 and not set(ranked) & {1, 2, 3}


def test_popularity_order(catalog):
    ranked = Popularity(catalog).rank(Case(user=9, history=(3,), target=1), 3)
    # train popularity in the fixture catalog: Toy Story 99, Alien 90, Aliens 85
    assert ranked == [5, 1, 11]


def test_itemknn_prefers_cowatched(catalog):
    # Alien (1) is co-watched with Blade Runner, Terminator 2, Twelve Monkeys, Aliens, Alien 3.
    ranked = ItemKNN(catalog).rank(Case(user=9, history=(1,), target=3), 5)
    assert set(ranked) == {2, 3, 7, 8, 11}


def test_llm_systems_rank_their_users_in_batches_before_scoring(catalog):
    """evaluate_system hands an LLM system all its users first; it ranks them
    ``batch`` at a time through ``rank_many`` and the lists equal one-at-a-time ranking."""
    from agent.llm.fake import FakeBackend
    from agent.rank.rerank import TailDiversityReranker
    from agent.rank.verbalizer import VerbalizerRanker
    from agent.types import Candidate
    from eval.systems import Hybrid, LLMRerank, TailRerank

    class Retriever:
        def retrieve(self, state, n):
            pool = [i for i in sorted(catalog.items) if i not in state.liked + state.shown]
            return [Candidate(i, 1.0 / (k + 1), ("semantic",)) for k, i in enumerate(pool[:n])]

    class Counting(VerbalizerRanker):
        calls: list = []

        def rank_many(self, requests):
            self.calls.append(len(requests))
            return super().rank_many(requests)

    scorer = lambda m, labels: [-float((len(m[-1]["content"]) + k) % 5) for k in range(len(labels))]
    ranker = Counting(FakeBackend(scorer=scorer), catalog, n_llm=4, weight=1.0)
    system = LLMRerank("llm-zero", Hybrid(catalog, Retriever(), pool=8), ranker, 4)
    cases = [Case(user=u, history=(u,), target=(u % 12) + 1) for u in range(1, 11)]
    system.prepare(cases, batch=4, progress=False)
    assert ranker.calls == [4, 4, 2]
    fresh = LLMRerank("llm-zero", Hybrid(catalog, Retriever(), pool=8),
                      VerbalizerRanker(FakeBackend(scorer=scorer), catalog, n_llm=4, weight=1.0), 4)
    assert all(system.rank(c, 8) == fresh.rank(c, 8) for c in cases)  # one at a time
    res = evaluate_system(TailRerank(system, TailDiversityReranker(catalog, 0.0, 0.0), 0.5),
                          cases, split_for(catalog), progress=False)
    assert ranker.calls == [4, 4, 2] and res.n_users == 10  # nothing ranked twice


def test_systems_are_parsed_with_their_numbers_and_bad_ones_are_refused():
    from agent.errors import ConfigError
    from eval.run import parse_systems

    assert parse_systems("sasrec, sasrec:2, tailor:0.3") == [
        ("sasrec", None), ("sasrec", 2.0), ("tailor", 0.3)]
    for bad, said in [("sasrec:1.5", "1 to 8"), ("sasrec:9", "1 to 8"), ("sasrec:0", "1 to 8"),
                      ("tailor:x", "must be a number"), ("magic", "unknown system")]:
        with pytest.raises(ConfigError, match=said):
            parse_systems(bad)
