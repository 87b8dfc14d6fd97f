import pytest

from agent.errors import BackendError, InputError
from agent.linking import TitleIndex
from agent.llm.fake import FakeBackend
from agent.ranking import VerbalizerRanker
from agent.recommender import CLARIFY, DEGRADED_RANKING, Recommender
from agent.retrieval import rrf_fuse
from agent.state import satisfies
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
    assert all(1990 <= r.item.year <= 1999 for r in r1.recommendations)
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
