"""The OpenAI-compatible backend: request shape and parsing with a fake client; failures
against real sockets (nothing listening, a server that never answers)."""

import socket
import threading
import time
from types import SimpleNamespace as NS

import httpx
import openai
import pytest

from agent.errors import BackendError
from agent.llm.openai_backend import OpenAIBackend
from agent.rank.verbalizer import VerbalizerRanker
from agent.recommender import DEGRADED_RANKING, Recommender
from agent.settings import Settings
from agent.understand.linking import TitleIndex
from tests.conftest import tiny_items
from tests.agent.retrieve.test_chroma_server import free_port
from tests.agent.turn.test_recommender import CatalogRetriever

MESSAGES = [{"role": "system", "content": "rank"}, {"role": "user", "content": "A. x\nB. y"}]


class FakeCompletions:
    def __init__(self, top=None, text="", error=None):
        self.top, self.text, self.error = top or {}, text, error
        self.requests = []
        self.stream_len = 4  # 3: the stream stops before the chunk that says it finished

    def create(self, **kw):
        self.requests.append(kw)
        if self.error is not None:
            raise self.error
        if kw.get("stream"):
            pieces = [("It ", None), ("", None), ("fits.", None), (None, "stop")][:self.stream_len]
            return iter(NS(choices=[NS(delta=NS(content=piece), finish_reason=end)])
                        for piece, end in pieces)
        entries = [NS(token=t, logprob=lp) for t, lp in self.top.items()]
        return NS(choices=[NS(logprobs=NS(content=[NS(top_logprobs=entries)]),
                              message=NS(content=f" {self.text} "))])


def backend(completions, tokenize=lambda text: None, **kw):
    client = NS(chat=NS(completions=completions))
    return OpenAIBackend("http://127.0.0.1:1/v1", "served-name", client=client,
                         tokenize=tokenize, **kw)


def test_many_ranking_prompts_go_out_concurrently_and_come_back_in_order():
    class Slow(FakeCompletions):
        def __init__(self):
            super().__init__()
            self.lock, self.in_flight, self.most = threading.Lock(), 0, 0

        def create(self, **kw):
            with self.lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
            time.sleep(0.05)
            with self.lock:
                self.in_flight -= 1
            k = int(kw["messages"][-1]["content"])  # each prompt favours its own label
            entries = [NS(token=t, logprob=-0.1 if j == k % 3 else -2.0)
                       for j, t in enumerate("ABC")]
            return NS(choices=[NS(logprobs=NS(content=[NS(top_logprobs=entries)]))])

    fake = Slow()
    b = backend(fake, concurrency=4)
    convs = [[{"role": "user", "content": str(k)}] for k in range(10)]
    out = b.label_logprobs_many(convs, [["A", "B", "C"]] * 10)
    assert [max(range(3), key=row.__getitem__) for row in out] == [k % 3 for k in range(10)]
    assert 1 < fake.most <= 4 and b.floored == 0
    assert b.label_logprobs_many([], []) == []


def test_label_logprobs_asks_for_one_token_with_top_logprobs_and_label_ids():
    fake = FakeCompletions({"B": -0.2, "A": -1.5, "The": -3.0})
    b = backend(fake, tokenize=lambda text: [ord(text)])
    assert b.label_logprobs(MESSAGES, ["A", "B"]) == [-1.5, -0.2]
    req = fake.requests[0]
    assert req["model"] == "served-name" and req["messages"] == MESSAGES
    assert req["max_tokens"] == 1 and req["logprobs"] is True and req["top_logprobs"] == 20
    assert req["temperature"] == 0.0 and req["extra_body"] == {"logprob_token_ids": [65, 66]}
    assert b.floored == 0


def test_labels_missing_from_the_top_list_get_the_lowest_listed_value():
    b = backend(FakeCompletions({"A": -0.1, "The": -2.5, "C": -4.0}))
    assert b.label_logprobs(MESSAGES, ["A", "B", "C", "D"]) == [-0.1, -4.0, -4.0, -4.0]
    assert b.floored == 2


def test_without_a_tokenize_endpoint_no_label_ids_are_sent():
    fake = FakeCompletions({"A": -0.1})
    backend(fake).label_logprobs(MESSAGES, ["A"])
    assert fake.requests[0]["extra_body"] is None


def test_a_label_of_several_tokens_is_an_error():
    with pytest.raises(BackendError, match="'AB' is 2 tokens"):
        backend(FakeCompletions({"A": -0.1}), tokenize=lambda t: [1] * len(t)).label_logprobs(
            MESSAGES, ["AB"])


def test_a_server_without_logprobs_is_an_error():
    with pytest.raises(BackendError, match="no log-probabilities"):
        backend(FakeCompletions({})).label_logprobs(MESSAGES, ["A"])


def test_generate_and_stream_return_the_text():
    fake = FakeCompletions(text="A fine pick.")
    b = backend(fake)
    assert b.generate([MESSAGES, MESSAGES], 30) == ["A fine pick.", "A fine pick."]
    assert all(r["max_tokens"] == 30 and r["model"] == "served-name" for r in fake.requests)
    assert "".join(b.stream(MESSAGES, 30)) == "It fits."
    pieces = list(b.stream_many([MESSAGES, MESSAGES], 30))
    assert sorted({k for k, _ in pieces}) == [0, 1]
    assert all("".join(p for k, p in pieces if k == row) == "It fits." for row in (0, 1))


def test_a_stream_that_stops_without_finishing_is_an_error_not_a_short_reply():
    fake = FakeCompletions(text="x")
    fake.stream_len = 3
    with pytest.raises(BackendError, match="ended a stream early"):
        list(backend(fake).stream(MESSAGES, 30))


def test_an_unknown_model_name_says_which_name_and_where_to_look():
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    error = openai.NotFoundError("no such model", response=httpx.Response(404, request=request),
                                 body=None)
    fake = FakeCompletions(error=error)
    b = backend(fake)
    for _ in range(2):  # a wrong name is not an outage: no fail-fast period
        with pytest.raises(BackendError, match="does not serve a model named 'served-name'"):
            b.label_logprobs(MESSAGES, ["A"])
    assert len(fake.requests) == 2


def test_after_a_timeout_the_backend_fails_fast_without_calling_the_server():
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    fake = FakeCompletions(error=openai.APITimeoutError(request=request))
    b = backend(fake, timeout=1.5, cooldown_s=60)
    with pytest.raises(BackendError, match="within 1.5 s"):
        b.label_logprobs(MESSAGES, ["A"])
    with pytest.raises(BackendError, match="failed moments ago"):
        b.generate([MESSAGES], 10)
    assert len(fake.requests) == 1


def test_nothing_listening_is_a_backend_error_at_once():
    b = OpenAIBackend(f"http://127.0.0.1:{free_port()}", "m", timeout=3)
    t = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach the LLM server"):
        b.label_logprobs(MESSAGES, ["A"])
    assert time.monotonic() - t < 1


@pytest.fixture
def silent_server():
    """A real TCP server that accepts connections and never answers (a stalled server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_a_stalled_server_times_out(silent_server):
    b = OpenAIBackend(silent_server, "m", timeout=0.5)
    t = time.monotonic()
    with pytest.raises(BackendError):
        b.label_logprobs(MESSAGES, ["A"])
    assert time.monotonic() - t < 2


@pytest.mark.parametrize("server", ["down", "stalled"])
def test_a_turn_degrades_to_retrieval_order_with_a_notice_within_5_s(catalog, silent_server,
                                                                      server):
    url = silent_server if server == "stalled" else f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings.from_env({"TAILOR_LLM_URL": url, "TAILOR_LLM_MODEL": "m"})
    from agent.build import make_backend

    b = make_backend(settings)  # the default timeout, as a user gets it
    ranker = VerbalizerRanker(b, catalog, n_llm=5, few_shot=True)
    rec = Recommender(catalog, TitleIndex(tiny_items()), CatalogRetriever(catalog), ranker, b,
                      n_candidates=5, top_k=3, explain="llm")
    t = time.monotonic()
    reply = rec.turn("I loved Alien, sci-fi from the 90s")
    assert time.monotonic() - t < 5
    assert DEGRADED_RANKING in reply.notices
    assert reply.recommendations and all(r.llm_score is None for r in reply.recommendations)
    before = reply.state.with_changes(shown=())
    expected = [c.item_id for c in CatalogRetriever(catalog).retrieve(before, 5)][:3]
    assert [r.item.id for r in reply.recommendations] == expected
