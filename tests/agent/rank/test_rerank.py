import pytest

from agent.errors import InputError
from agent.rank.rerank import PopularityScale, TailDiversityReranker
from agent.rank.verbalizer import Ranked
from agent.types import DialogueState
from agent.understand.parse import parse_message
from agent.understand.state import describe, merge


def ranked(*ids):
    return [Ranked(i, 10.0 - k, 10.0 - k, None) for k, i in enumerate(ids)]


def order(entries):
    return [r.item_id for r in entries]


def test_zero_knobs_keep_the_order(catalog):
    rr = TailDiversityReranker(catalog)
    assert order(rr.rerank(ranked(5, 3, 12, 10))) == [5, 3, 12, 10]
    assert order(rr.rerank(ranked(5, 3, 12, 10), k=2)) == [5, 3]


def test_full_tail_boost_puts_the_least_watched_retrieved_items_first(catalog):
    # popularity: Toy Story 99, T2 95, Annie Hall 20, Species 10
    rr = TailDiversityReranker(catalog, tail_boost=1.0)
    assert order(rr.rerank(ranked(5, 3, 10, 12))) == [12, 10, 3, 5]
    assert set(order(rr.rerank(ranked(5, 3, 10, 12)))) == {5, 3, 10, 12}  # reorders, never adds


def test_half_tail_boost_blends_rank_and_novelty_on_one_scale(catalog):
    scale = PopularityScale(catalog)
    # 12 items, popularity ranks: Species (10) is the least watched, Toy Story (99) the most.
    assert scale.percentile(12) == 0.0 and scale.percentile(5) == 1.0
    rr = TailDiversityReranker(catalog, tail_boost=0.5)
    got = rr.objective(ranked(5, 12))
    assert got == pytest.approx([0.5 * 1 + 0.5 * 0.0, 0.5 * 0 + 0.5 * 1.0])
    # Ties keep the incoming order.
    assert order(rr.rerank(ranked(5, 12))) == [5, 12]


def test_relevance_is_the_score_gap_not_the_position(catalog):
    """The same order, two score gaps, tail_boost 0.2. Toy Story (novelty 0) leads
    Species (novelty 1). Barely ahead (1.0 vs 0.9, T2 last at 0.0): Species gets
    0.8 * 0.9 + 0.2 * 1 = 0.92 > Toy Story's 0.8 and goes first. Clearly ahead (1.0 vs
    0.1): 0.8 * 0.1 + 0.2 = 0.28 < 0.8 and the order stands."""
    rr = TailDiversityReranker(catalog, tail_boost=0.2)

    def scored(*pairs):
        return [Ranked(i, s, s, None) for i, s in pairs]

    assert order(rr.rerank(scored((5, 1.0), (12, 0.9), (3, 0.0)))) == [12, 5, 3]
    assert order(rr.rerank(scored((5, 1.0), (12, 0.1), (3, 0.0)))) == [5, 12, 3]
    assert rr.objective(scored((5, 1.0), (12, 0.9), (3, 0.0)))[:2] == pytest.approx([0.8, 0.92])


def test_diversity_pays_for_genre_overlap_with_what_is_already_picked(catalog):
    # Alien, Aliens (same genres as Alien mostly), Alien 3, Annie Hall (comedy/romance)
    plain = order(TailDiversityReranker(catalog).rerank(ranked(1, 11, 7, 10)))
    diverse = order(TailDiversityReranker(catalog, diversity=1.0).rerank(ranked(1, 11, 7, 10)))
    assert plain == [1, 11, 7, 10]
    assert diverse == [1, 10, 11, 7]  # the comedy jumps the near-duplicates
    half = order(TailDiversityReranker(catalog, diversity=0.5).rerank(ranked(1, 11, 7, 10)))
    assert half == [1, 11, 10, 7]  # 0.5*(2/3) - 0.5*0.6 > 0 for Aliens; Alien 3 pays 0.75


def test_scores_follow_the_new_order(catalog):
    out = TailDiversityReranker(catalog, tail_boost=1.0, diversity=0.5).rerank(ranked(5, 3, 10, 12))
    scores = [r.score for r in out]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("value", [-0.1, 1.5, "high", None])
def test_knobs_outside_zero_to_one_are_refused(catalog, value):
    with pytest.raises(InputError, match="from 0 to 1"):
        TailDiversityReranker(catalog, tail_boost=value)
    if value is not None:  # None in a call means "this re-ranker's own setting"
        with pytest.raises(InputError):
            TailDiversityReranker(catalog).rerank(ranked(1, 2), diversity=value)


def test_asking_for_hidden_gems_sets_and_keeps_the_tail_preference(catalog):
    from agent.understand.linking import TitleIndex

    index = TitleIndex(list(catalog.items.values()))
    s1 = merge(DialogueState(), parse_message("some hidden gems like Alien", index))
    assert s1.tail_boost == 0.7 and s1.liked == (1,) and s1.query == ""
    assert "lesser-known picks" in describe(s1, catalog.items)
    s2 = merge(s1, parse_message("from the 90s", index))
    assert s2.tail_boost == 0.7  # kept until the user says otherwise
    s3 = merge(s2, parse_message("actually something popular", index))
    assert s3.tail_boost == 0.0 and "popular picks" in describe(s3, catalog.items)


def test_without_diversity_the_tail_blend_is_the_greedy_pick_order(catalog):
    # diversity 0 takes a sort, not the greedy MMR loop: same order, same rewritten scores
    import random

    rng = random.Random(0)
    ids = list(catalog.items)
    for _ in range(20):
        entries = [Ranked(i, rng.choice([1.0, 2.0, 3.0]), 0.0, None)
                   for i in rng.sample(ids, 8)]
        fast = TailDiversityReranker(catalog, tail_boost=0.4)
        slow = TailDiversityReranker(catalog, tail_boost=0.4, diversity=1e-12)
        a, b = fast.rerank(entries), slow.rerank(entries)
        assert order(a) == order(b)
        assert [r.score for r in a] == pytest.approx([r.score for r in b])
        assert order(fast.rerank(entries, k=3)) == order(a)[:3]


def test_the_tail_floor_keeps_the_sequence_models_share_of_tail_items(catalog):
    from agent.types import Candidate

    # head = {1, 3, 5, 11}; the sequence model's first two: 12 (tail) and 10 (tail)
    cands = [Candidate(i, 0.0, ("x",), sequential_rank=r)
             for i, r in ((5, None), (3, 3), (12, 0), (10, 1), (4, 2), (1, None))]
    on = TailDiversityReranker(catalog, floor=True)
    got = order(on.floored(ranked(5, 3, 1, 12, 10, 4), cands, 2))
    assert got == [12, 10, 5, 3, 1, 4]  # both head picks give way, and move just below
    assert order(on.floored(ranked(5, 12, 3, 10), cands, 2)) == [12, 10, 5, 3]
    assert order(on.floored(ranked(12, 10, 5), cands, 2)) == [12, 10, 5]  # already there
    # Without the floor, or with only head items to promote, nothing moves.
    assert order(TailDiversityReranker(catalog).floored(ranked(5, 3, 12), cands, 2)) == [5, 3, 12]
    assert order(on.floored(ranked(5, 3, 1), cands, 2)) == [5, 3, 1]


def test_picks_alike_to_a_named_title_rise_and_scores_stay_best_first(catalog):
    rr = TailDiversityReranker(catalog)
    like_alien = DialogueState(liked=(1,))  # Action, Horror, Sci-Fi, Thriller
    # Fused relevance 1, 2/3, 1/3, 0; likeness to Alien: Toy Story (5) and Annie Hall
    # (10) none, Heat (6) 2 of 5 genres (0.4, the most: 1), Twelve Monkeys (8) 1 of 5.
    got = rr.like_named(ranked(5, 6, 10, 8), like_alien)
    assert order(got) == [6, 5, 8, 10]
    assert [r.score for r in got] == pytest.approx([2 / 3 + 1, 1, 0.5, 1 / 3])
    # Aliens (three of Alien's genres and Sigourney Weaver) passes Twelve Monkeys (one
    # genre), which the fusion had put first.
    assert order(rr.like_named(ranked(8, 11, 5), like_alien)) == [11, 8, 5]


def test_named_titles_do_not_reorder_what_asked_for_kinds_itself(catalog):
    rr = TailDiversityReranker(catalog)
    for state in (DialogueState(), DialogueState(liked=(1,), genres=("Comedy",)),
                  DialogueState(liked=(1,), moods=("cozy",)),
                  DialogueState(liked=(1,), like_genres=("Comedy",))):
        assert order(rr.like_named(ranked(5, 6, 10), state)) == [5, 6, 10]
    assert order(rr.like_named(ranked(5, 10), DialogueState(liked=(1,)))) == [5, 10]  # none
