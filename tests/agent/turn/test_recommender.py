import pytest

from agent.errors import BackendError, InputError
from agent.llm.fake import FakeBackend
from agent.rank.rerank import TailDiversityReranker
from agent.rank.verbalizer import VerbalizerRanker
from agent.recommender import CLARIFY, DEGRADED_RANKING, Recommender
from agent.retrieve.sources import rrf_fuse
from agent.understand.linking import TitleIndex
from agent.understand.state import satisfies
from tests.conftest import tiny_items


class CatalogRetriever:
    """Every item that satisfies the state, most popular first (a fake for logic tests)."""

    def __init__(self, catalog):
        self.catalog = catalog

    def retrieve(self, state, n):
        fits = sorted((it for it in self.catalog.items.values() if satisfies(it, state)),
                      key=lambda it: -it.popularity)
        return rrf_fuse({"popular": [(it.id, it.popularity) for it in fits]}, n)


def make(catalog, backend, **kw):
    ranker = VerbalizerRanker(backend, catalog, n_llm=3, weight=1.0, few_shot=False)
    return Recommender(catalog, TitleIndex(tiny_items()), CatalogRetriever(catalog), ranker,
                       backend, n_candidates=5, top_k=2, **kw)


def test_turn_respects_constraints_and_never_repeats(catalog):
    rec = make(catalog, FakeBackend())
    r1 = rec.turn("I loved Alien, something from the 90s")
    ids1 = [r.item.id for r in r1.recommendations]
    assert len(ids1) == 2 and 1 not in ids1
    assert all(1990 <= r.item.value("year") <= 1999 for r in r1.recommendations)
    r2 = rec.turn("more please", r1.state)
    ids2 = [r.item.id for r in r2.recommendations]
    assert not set(ids1) & set(ids2)
    assert set(r2.state.shown) == set(ids1) | set(ids2)


def test_every_recommendation_is_a_catalog_item_with_an_explanation(catalog):
    rec = make(catalog, FakeBackend())
    reply = rec.turn("sci-fi please")
    assert reply.recommendations
    for r in reply.recommendations:
        assert catalog.get(r.item.id) == r.item and r.explanation and r.explanation_source == "template"


def test_llm_explanations_that_fail_checks_fall_back_to_facts(catalog):
    backend = FakeBackend(replies=["It is sci-fi, like Alien.",
                                   "A sequel to The Matrix (1999), from James Cameron."])
    rec = make(catalog, backend, explain="llm")
    reply = rec.turn("I loved Alien, sci-fi from the 90s")
    sources = [r.explanation_source for r in reply.recommendations]
    assert sources == ["llm", "template"]
    assert "Matrix" not in reply.text


def test_failing_backend_degrades_to_retrieval_order_with_notice(catalog):
    class Broken(FakeBackend):
        def label_logprobs(self, messages, labels):
            raise BackendError("connection refused")

    reply = make(catalog, Broken()).turn("I loved Alien, something from the 90s")
    assert DEGRADED_RANKING in reply.notices
    assert len(reply.recommendations) == 2


def test_degraded_ranking_scores_follow_the_reranked_order(catalog):
    """Without the LLM the re-ranker still reorders (towards the tail here); the scores a
    reply shows are its objective, best first, as on the normal path (a client sorting
    by score must not undo the order)."""
    class Broken(FakeBackend):
        def label_logprobs(self, messages, labels):
            raise BackendError("connection refused")

    rec = make(catalog, Broken(), reranker=TailDiversityReranker(catalog, tail_boost=1.0))
    reply = rec.turn("I loved Alien, something from the 90s")
    assert DEGRADED_RANKING in reply.notices
    recs = reply.recommendations
    pops = [r.item.popularity for r in recs]
    assert len(recs) == 2 and pops == sorted(pops) and pops[0] < pops[1]  # the tail first
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)


def test_vague_request_gets_a_clarifying_question(catalog):
    reply = make(catalog, FakeBackend()).turn("recommend me a movie")
    assert reply.text == CLARIFY and reply.recommendations == ()


def test_impossible_constraints_say_so(catalog):
    reply = make(catalog, FakeBackend()).turn("a western from the 1930s")
    assert reply.recommendations == () and "Nothing in the catalog fits" in reply.text


@pytest.mark.parametrize("bad", ["", "   \n\t", "x" * 5000, None, 42])
def test_bad_input_is_a_clear_error(catalog, bad):
    with pytest.raises(InputError):
        make(catalog, FakeBackend()).turn(bad)


def test_control_characters_are_dropped(catalog):
    reply = make(catalog, FakeBackend()).turn("I loved Alien\x00\x1b[31m, 90s")
    assert reply.state.liked == (1,)


def test_turn_stream_gives_picks_first_then_growing_drafts_then_the_same_reply_as_turn(catalog):
    replies = ["It is sci-fi, like Alien.", "A sci-fi pick, like Alien."]
    events = list(make(catalog, FakeBackend(replies=list(replies)), explain="llm")
                  .turn_stream("I loved Alien, sci-fi from the 90s"))
    assert [e.kind for e in events][0] == "picks" and events[-1].kind == "final"
    picks, final = events[0].reply, events[-1].reply
    assert [r.item.id for r in picks.recommendations] == [r.item.id for r in final.recommendations]
    assert all(r.explanation == "" and r.explanation_source == "pending"
               for r in picks.recommendations)
    assert "picks" in picks.timings and picks.timings["picks"] <= final.timings["total"]
    drafts = [(e.index, e.text) for e in events if e.kind == "draft"]
    first = [t for k, t in drafts if k == 0]
    assert len(first) >= 3 and all(b.startswith(a) for a, b in zip(first, first[1:]))
    assert first[-1] == replies[0] == final.recommendations[0].explanation
    batch = make(catalog, FakeBackend(replies=list(replies)), explain="llm").turn(
        "I loved Alien, sci-fi from the 90s")
    assert batch.to_json()["items"] == final.to_json()["items"]


def test_a_streamed_draft_stops_growing_at_a_false_claim_and_becomes_the_template(catalog):
    bad = "Directed by James Cameron with Arnold Schwarzenegger, a sci-fi sequel."
    events = list(make(catalog, FakeBackend(replies=["It is sci-fi, like Alien.", bad]),
                       explain="llm").turn_stream("I loved Alien, sci-fi from the 90s"))
    assert events[-1].reply.recommendations[1].item.id != 3  # Cameron did not make it
    shown = [e.text for e in events if e.kind == "draft" and e.index == 1]
    assert "Directed by" in shown  # the start was fine and was shown...
    assert not any("Cameron" in t for t in shown)  # ...the false credit never was
    final = events[-1].reply.recommendations[1]
    assert final.explanation_source == "template" and shown[-1] == final.explanation


def test_a_draft_whose_whole_fails_the_check_is_replaced_at_the_end(catalog):
    # No single word is checkable as false until the sentence never ends.
    events = list(make(catalog, FakeBackend(replies=["It is sci-fi, like Alien.",
                                                     "It is a fine sci-fi pick and"]),
                       explain="llm").turn_stream("I loved Alien, sci-fi from the 90s"))
    shown = [e.text for e in events if e.kind == "draft" and e.index == 1]
    final = events[-1].reply.recommendations[1]
    assert "It is a fine" in shown and final.explanation_source == "template"
    assert shown[-1] == final.explanation


class DyingStream(FakeBackend):
    def stream_many(self, conversations, max_new_tokens):
        yield 0, "It is"
        raise BackendError("the server went away")


def test_a_backend_that_dies_mid_stream_gives_templates_and_a_notice(catalog):
    events = list(make(catalog, DyingStream(), explain="llm")
                  .turn_stream("I loved Alien, sci-fi from the 90s"))
    final = events[-1].reply
    assert final.recommendations and all(r.explanation_source == "template"
                                         for r in final.recommendations)
    assert any("could not write explanations" in n for n in final.notices)


def test_turn_stream_rejects_bad_input_before_any_event(catalog):
    with pytest.raises(InputError):
        next(make(catalog, FakeBackend()).turn_stream("   "))


def test_terminal_chat_shows_the_picks_before_the_written_explanations(catalog):
    from agent.interfaces.commands import chat_loop

    said = iter(["I loved Alien, sci-fi from the 90s", "   "])
    out: list[str] = []
    rec = make(catalog, FakeBackend(replies=["It is sci-fi, like Alien."] * 2), explain="llm")
    assert chat_loop(rec, read=lambda _: next(said), write=out.append) == 0
    picks = [line for line in out if line.startswith("Picks: ")]
    assert len(picks) == 1 and out.index(picks[0]) == 1
    answer = out[2]
    assert "It is sci-fi, like Alien." in answer
    assert all(t.split(" (")[0] in answer for t in picks[0][7:].split(", "))


def test_terminal_chat_reports_bad_input_and_goes_on(catalog):
    from agent.interfaces.commands import chat_loop

    said = iter(["\x00\x00", "I loved Alien, sci-fi from the 90s"])
    out: list[str] = []

    def read(_):
        try:
            return next(said)
        except StopIteration:
            raise EOFError from None

    rec = make(catalog, FakeBackend(), explain="template")  # instant: no early picks line
    assert chat_loop(rec, read=read, write=out.append) == 0
    assert out[1].startswith("! ") and not any(line.startswith("Picks: ") for line in out)
    assert "Looking for" in out[2] or "1." in out[2]


def test_a_film_listed_twice_is_picked_once_and_never_again(catalog):
    from dataclasses import replace

    from agent.data.catalog import Catalog

    twin = replace(catalog.get(3), id=13, popularity=94)  # Terminator 2 under a second id
    both = Catalog([*catalog.items.values(), twin], catalog.meta, catalog.user, catalog.item,
                   catalog.timestamp, catalog.head)
    rec = make(both, FakeBackend(), explain="template")
    first = rec.turn("sci-fi please")
    labels = [r.item.label for r in first.recommendations]
    assert labels[0] == "Terminator 2: Judgment Day (1991)" and len(set(labels)) == len(labels) == 2
    later = rec.turn("more sci-fi", first.state)
    assert "Terminator 2: Judgment Day (1991)" not in [r.item.label for r in later.recommendations]


def test_default_picks_keep_the_sequence_models_tail_items_unless_the_user_said(catalog):
    from agent.types import Candidate, DialogueState

    # Retrieval puts the head first (head = {1, 3, 5, 11}); the sequence model's first
    # two are tail items (12, 10).
    cands = [Candidate(i, 10.0 - k, ("x",), sequential_rank=r)
             for k, (i, r) in enumerate(((5, 4), (3, 5), (12, 0), (10, 1), (1, None)))]
    rec = make(catalog, FakeBackend(), reranker=TailDiversityReranker(catalog, floor=True))

    def picks(**state):
        return [r.item_id for r in rec.rank(DialogueState(**state), cands, 0.0, [])]

    assert sorted(picks()) == [10, 12]
    assert all(i in (1, 3, 5, 11) for i in picks(tail_boost=0.0))  # "popular films"
    plain = make(catalog, FakeBackend(), reranker=TailDiversityReranker(catalog))
    assert [r.item_id for r in plain.rank(DialogueState(), cands, 0.0, [])] == picks(
        tail_boost=0.0)


def test_something_like_a_named_title_leads_with_what_shares_its_genres(catalog):
    # The stand-in retriever proposes by popularity: Toy Story (Animation, Children's,
    # Comedy) first. Asked for something like Twelve Monkeys (Drama, Sci-Fi), the picks
    # lead with what shares a genre with it.
    from agent.rank.rerank import TailDiversityReranker

    plain = make(catalog, FakeBackend()).turn("something like Twelve Monkeys")
    assert plain.recommendations[0].item.title == "Toy Story"
    rec = make(catalog, FakeBackend(), reranker=TailDiversityReranker(catalog))
    reply = rec.turn("something like Twelve Monkeys")
    assert all({"Drama", "Sci-Fi"} & set(r.item.values("genres")) for r in reply.recommendations)
    scores = [r.score for r in reply.recommendations]
    assert scores == sorted(scores, reverse=True)


def test_a_tail_preference_still_applies_on_top_of_likeness(catalog):
    # Likeness re-scores the ranked list before the tail re-ranking, so a full tail
    # boost still puts the less-watched first (after it, Terminator 2 would lead).
    from agent.rank.rerank import TailDiversityReranker

    rec = make(catalog, FakeBackend(), reranker=TailDiversityReranker(catalog, tail_boost=1.0))
    pops = [r.item.popularity for r in rec.turn("something like Aliens").recommendations]
    assert len(pops) == 2 and pops == sorted(pops)
