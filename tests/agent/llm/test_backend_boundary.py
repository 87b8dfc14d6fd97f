"""The backend boundary degrades on backend failures only: a ``BackendError`` (what
every backend raises when its model or server fails) becomes a notice and a fallback,
while a bug on our side of the boundary (building a prompt, reading a reply) raises."""

import pytest

from agent.errors import BackendError
from agent.llm.fake import FakeBackend
from agent.rank.verbalizer import VerbalizerRanker
from agent.recommender import DEGRADED_EXPLAIN, DEGRADED_RANKING
from agent.understand.extract import StateExtractor
from tests.agent.turn.test_recommender import make

ASK = "I loved Alien, sci-fi from the 90s"


class PromptBug(VerbalizerRanker):
    """A ranker whose prompt building has a bug."""

    def messages(self, state, cands):
        raise KeyError("candidate_block")


def with_ranker(catalog, backend, ranker_cls, **kw):
    rec = make(catalog, backend, **kw)
    rec.ranker = ranker_cls(backend, catalog, n_llm=3, weight=1.0, few_shot=False)
    return rec


def test_a_bug_in_building_the_ranking_prompt_raises_out_of_the_turn(catalog):
    rec = with_ranker(catalog, FakeBackend(), PromptBug)
    with pytest.raises(KeyError, match="candidate_block"):
        rec.turn(ASK)
    with pytest.raises(KeyError):
        list(rec.turn_stream(ASK))


def test_a_failing_ranking_backend_degrades_with_the_notice(catalog):
    rec = with_ranker(catalog, FakeBackend(fail={"label_logprobs"}), VerbalizerRanker)
    reply = rec.turn(ASK)
    assert reply.notices == (DEGRADED_RANKING,)
    assert len(reply.recommendations) == 2
    assert all(r.llm_score is None for r in reply.recommendations)


@pytest.mark.parametrize("error", [TypeError("bad argument"), KeyError("title"),
                                   AttributeError("no attribute")])
def test_a_bug_raised_while_explaining_is_not_called_an_unavailable_model(catalog, error):
    class Buggy(FakeBackend):
        def generate(self, conversations, max_new_tokens):
            raise error

        def stream_many(self, conversations, max_new_tokens):
            raise error
            yield  # a generator, as the real ones are

    with pytest.raises(type(error)):
        make(catalog, Buggy(), explain="llm").turn(ASK)
    with pytest.raises(type(error)):
        list(make(catalog, Buggy(), explain="llm").turn_stream(ASK))


def test_failing_explanation_backends_degrade_to_templates(catalog):
    reply = make(catalog, FakeBackend(fail={"generate"}), explain="llm").turn(ASK)
    assert DEGRADED_EXPLAIN in reply.notices and DEGRADED_RANKING not in reply.notices
    assert all(r.explanation_source == "template" for r in reply.recommendations)
    events = list(make(catalog, FakeBackend(fail={"stream_many"}), explain="llm").turn_stream(ASK))
    final = events[-1].reply
    assert DEGRADED_EXPLAIN in final.notices
    assert all(r.explanation_source == "template" for r in final.recommendations)


def test_state_extraction_degrades_on_backend_errors_only(catalog):
    rec = make(catalog, FakeBackend(fail={"generate_json"}))
    rec.extractor = StateExtractor(rec.backend, rec.title_index, "always")
    assert rec.turn("I loved Alien, something eerie").state.liked == (1,)

    class Buggy(FakeBackend):
        def generate_json(self, *a):
            raise TypeError("bug in the form")

    rec = make(catalog, Buggy())
    rec.extractor = StateExtractor(rec.backend, rec.title_index, "always")
    with pytest.raises(TypeError):
        rec.turn("I loved Alien, something eerie")


def test_the_fake_backend_fails_as_a_backend_does():
    with pytest.raises(BackendError):
        FakeBackend(fail={"generate"}).generate([[]], 5)
    assert FakeBackend(fail={"generate"}).label_logprobs([], ["A"]) == [0.0]


def test_the_local_backend_reports_model_failures_as_backend_errors():
    import torch

    from agent.llm.local import model_errors

    with pytest.raises(BackendError, match="OutOfMemoryError"):
        with model_errors("generation"):
            raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(BackendError, match="RuntimeError"):
        with model_errors("ranking"):
            raise RuntimeError("expected all tensors to be on the same device")
    with pytest.raises(KeyError):  # not the model's failure
        with model_errors("ranking"):
            raise KeyError("x")


def openai_errors():
    import httpx
    import openai

    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    response = httpx.Response(200, request=request)
    return [openai.APIResponseValidationError(response=response, body=None),
            openai.APIError("odd", request=request, body=None),
            httpx.RemoteProtocolError("peer closed connection", request=request),
            ConnectionResetError("reset by peer")]


@pytest.mark.parametrize("error", openai_errors(), ids=lambda e: type(e).__name__)
def test_the_openai_backend_maps_every_server_failure_to_a_backend_error(error):
    from tests.agent.llm.test_openai_backend import FakeCompletions, backend

    b = backend(FakeCompletions(error=error))
    with pytest.raises(BackendError):
        b.generate([[{"role": "user", "content": "hi"}]], 5)


def test_the_openai_backend_maps_a_reply_without_a_message_to_a_backend_error():
    from types import SimpleNamespace as NS

    from tests.agent.llm.test_openai_backend import FakeCompletions, backend

    class Empty(FakeCompletions):
        def create(self, **kw):
            return NS(choices=[])

    with pytest.raises(BackendError, match="without a message"):
        backend(Empty()).generate([[{"role": "user", "content": "hi"}]], 5)
    with pytest.raises(BackendError, match="without a message"):
        backend(Empty()).generate_json([{"role": "user", "content": "hi"}], {}, 5)


def test_a_stream_cut_between_chunks_is_a_backend_error():
    from types import SimpleNamespace as NS

    import httpx

    from tests.agent.llm.test_openai_backend import FakeCompletions, backend

    class Cut(FakeCompletions):
        def create(self, **kw):
            def chunks():
                yield NS(choices=[NS(delta=NS(content="It "), finish_reason=None)])
                raise httpx.ReadError("connection lost")
            return chunks()

    pieces = []
    with pytest.raises(BackendError, match="cannot reach"):
        for piece in backend(Cut()).stream([{"role": "user", "content": "hi"}], 5):
            pieces.append(piece)
    assert pieces == ["It "]
