"""Faults a deployment meets, each caused for real rather than mocked: the LLM server
process SIGKILLed while a turn waits on it, a missing or damaged Chroma index, and the
API SIGKILLed while clients store feedback. Damage is only ever done to copies in
``tmp_path``; the real data home is read, never written."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent.build import build_recommender
from agent.errors import AssetError, BackendError
from agent.interfaces.sessions import SessionStore
from agent.llm.openai_backend import OpenAIBackend
from agent.rank.verbalizer import VerbalizerRanker
from agent.recommender import DEGRADED_EXPLAIN, DEGRADED_RANKING, Recommender
from agent.types import DialogueState
from agent.understand.linking import TitleIndex
from tests.conftest import tiny_items
from tests.agent.retrieve.test_chroma_server import free_port
from tests.agent.turn.test_end_to_end import ISSUE_QUERY
from tests.agent.retrieve.test_index import HashEmbedder
from tests.agent.turn.test_recommender import CatalogRetriever

KILL_AFTER_S = 0.3  # how long the client waits inside its request before the kill
CONV = [{"role": "user", "content": "In one sentence, why watch Heat (1995)?"}]

# An OpenAI-compatible server (stdlib only) that answers until it reaches the step named
# on its command line, then says so on stdout and hangs there: the test SIGKILLs it.
FAKE_LLM = r'''
import json, string, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, HANG = int(sys.argv[1]), sys.argv[2]  # HANG: rank | explain | stream


LOCK = threading.Lock()


def hang(step):
    with LOCK:  # requests arrive in parallel (explanations): one whole line each
        sys.stdout.write(f"HANG {step}\n")
        sys.stdout.flush()
    time.sleep(600)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":  # e.g. /tokenize: not vLLM, top-20 only
            return self.send(404, {"error": {"message": "not found"}})
        if req.get("logprobs"):  # a ranking request
            if HANG == "rank":
                hang("rank")
            top = [{"token": c, "logprob": -0.1 * k, "bytes": None}
                   for k, c in enumerate(string.ascii_uppercase[:20])]
            choice = {"index": 0, "finish_reason": "length",
                      "message": {"role": "assistant", "content": "A"},
                      "logprobs": {"content": [{"token": "A", "logprob": 0.0, "bytes": None,
                                                "top_logprobs": top}]}}
            return self.send(200, {"id": "x", "object": "chat.completion", "created": 0,
                                   "model": req["model"], "choices": [choice]})
        if not req.get("stream"):
            hang("explain")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")  # as uvicorn (vLLM's server) streams
        self.end_headers()
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": req["model"],
                 "choices": [{"index": 0, "delta": {"content": "It fits "},
                              "finish_reason": None}]}
        event = ("data: " + json.dumps(chunk) + "\n\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()
        hang("stream")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server process exited at start-up (code {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listened on port {port} within {timeout_s} s")


class DyingLLM:
    """``FAKE_LLM`` in its own process, SIGKILLed ``KILL_AFTER_S`` after it starts hanging
    (so the client is waiting inside a request when the server dies)."""

    def __init__(self, script: Path, hang: str):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.port), hang],
                                     stdout=subprocess.PIPE, text=True)
        wait_listening(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.hung_at: str | None = None
        self.killed_at: float | None = None
        self._watcher = threading.Thread(target=self._kill_when_hanging, daemon=True)
        self._watcher.start()

    def _kill_when_hanging(self) -> None:
        line = self.proc.stdout.readline()  # "" when the process ends without hanging
        if line.startswith("HANG"):
            self.hung_at = line.split()[1]
            time.sleep(KILL_AFTER_S)
            self.killed_at = time.monotonic()  # before the kill: the client may wake at once
            self.proc.send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._watcher.join(timeout=10)
        self.proc.stdout.close()


@pytest.fixture
def dying_llm(tmp_path):
    """``dying_llm(step)``: a fake LLM server that is killed once it hangs at ``step``."""
    script = tmp_path / "fake_llm.py"
    script.write_text(FAKE_LLM)
    servers = []

    def start(step: str) -> DyingLLM:
        servers.append(DyingLLM(script, step))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def tiny_recommender(catalog, url: str) -> Recommender:
    # A generous timeout: only the kill, never the timeout, can end these requests quickly.
    backend = OpenAIBackend(url, "served-name", timeout=60)
    ranker = VerbalizerRanker(backend, catalog, n_llm=5, few_shot=False)
    return Recommender(catalog, TitleIndex(tiny_items()), CatalogRetriever(catalog), ranker,
                       backend, n_candidates=5, top_k=3, explain="llm")


def subprocess_env(home: Path, **extra) -> dict:
    """The test's environment without any TAILOR_* setting of the caller's, plus ``extra``.
    The SASRec epoch cap stays: it names which of the home's trained models are used
    (`make test` caps them), as it does for the tests' own in-process recommenders."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TAILOR_") or k == "TAILOR_SASREC_EPOCHS"}
    return dict(env, TAILOR_HOME=str(home), HF_HUB_OFFLINE="1", **extra)


def home_with_index_copy(tmp_path: Path, real_home: Path) -> Path:
    """A data home whose data and weights are the real ones (symlinks) but whose Chroma
    index and sessions database are its own, so faults never touch the real home."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("data", "models"):
        (home / name).symlink_to(real_home / name)
    shutil.copytree(real_home / "index", home / "index")
    return home


# LLM server killed mid-turn ------------------------------------------------------------

@pytest.mark.integration
def test_llm_killed_while_explaining_keeps_the_llm_ranking_and_falls_back_to_facts(
        catalog, dying_llm):
    server = dying_llm("explain")
    rec = tiny_recommender(catalog, server.url)
    reply = rec.turn("I loved Alien, sci-fi from the 90s")
    done = time.monotonic()
    assert server.hung_at == "explain" and server.killed_at is not None
    assert done - server.killed_at < 3  # the kill, not the 60 s timeout, ended the wait
    assert DEGRADED_EXPLAIN in reply.notices and DEGRADED_RANKING not in reply.notices
    assert len(reply.recommendations) == 3
    assert all(r.llm_score is not None for r in reply.recommendations)  # ranked before the kill
    assert all(r.explanation and r.explanation_source == "template"
               for r in reply.recommendations)


@pytest.mark.integration
def test_llm_killed_while_ranking_gives_retrieval_order_with_a_notice(catalog, dying_llm):
    server = dying_llm("rank")
    rec = tiny_recommender(catalog, server.url)
    reply = rec.turn("I loved Alien, sci-fi from the 90s")
    assert server.hung_at == "rank" and time.monotonic() - server.killed_at < 3
    assert DEGRADED_RANKING in reply.notices
    assert all(r.llm_score is None for r in reply.recommendations)
    asked = reply.state.with_changes(shown=(), last=())
    expected = [c.item_id for c in CatalogRetriever(catalog).retrieve(asked, 5)][:3]
    assert [r.item.id for r in reply.recommendations] == expected


@pytest.mark.integration
def test_llm_killed_mid_stream_is_a_backend_error_after_the_text_so_far(dying_llm):
    server = dying_llm("stream")
    backend = OpenAIBackend(server.url, "served-name", timeout=60, tokenize=lambda text: None)
    pieces = []
    with pytest.raises(BackendError, match="cannot reach the LLM server"):
        for piece in backend.stream(CONV, 30):
            pieces.append(piece)
    assert server.hung_at == "stream" and time.monotonic() - server.killed_at < 3
    assert pieces == ["It fits "]


@pytest.mark.integration
def test_llm_killed_while_streaming_explanations_ends_the_turn_with_facts_and_a_notice(
        catalog, dying_llm):
    server = dying_llm("stream")
    rec = tiny_recommender(catalog, server.url)
    events = list(rec.turn_stream("I loved Alien, sci-fi from the 90s"))
    assert server.hung_at == "stream" and time.monotonic() - server.killed_at < 3
    assert events[0].kind == "picks" and events[-1].kind == "final"
    final = events[-1].reply
    assert DEGRADED_EXPLAIN in final.notices and DEGRADED_RANKING not in final.notices
    assert final.recommendations[0].item == events[0].reply.recommendations[0].item
    assert all(r.explanation_source == "template" for r in final.recommendations)
    drafts = [e for e in events if e.kind == "draft"]
    assert "It" in [e.text for e in drafts]  # what streamed before the kill was shown ...
    last = {e.index: e.text for e in drafts}  # ... then replaced by each pick's facts
    assert [last[k] for k in range(3)] == [r.explanation for r in final.recommendations]


@pytest.mark.integration
@pytest.mark.assets
@pytest.mark.slow
def test_tailor_ask_answers_when_the_llm_server_is_killed_mid_ranking(real_settings, dying_llm):
    server = dying_llm("rank")
    env = subprocess_env(real_settings.home, TAILOR_LLM_URL=server.url,
                         TAILOR_LLM_MODEL="served-name", TAILOR_LLM_TIMEOUT="60")
    out = subprocess.run([sys.executable, "-m", "agent", "ask", ISSUE_QUERY, "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert server.hung_at == "rank" and server.killed_at is not None
    reply = json.loads(out.stdout)
    assert reply["notices"] == [DEGRADED_RANKING]
    assert reply["timings_s"]["rank"] < 5  # waited for the kill only, not the 60 s timeout
    assert "cannot reach the LLM server" in out.stderr  # the log line says what happened
    items = reply["items"]
    assert len(items) == 3 and all(1990 <= it["year"] <= 1999 for it in items)
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)  # best first
    # The picks and scores are the candidate sources' (the learned fusion's when set-up
    # trained one, else RRF's) through the default re-ranker, nothing the LLM moved: the
    # same recommender, its ranker failing, gives the same for this state (before this
    # turn, nothing was shown).
    rec = build_recommender(real_settings, backend=object(), log=lambda *a: None)
    state = DialogueState.from_dict(reply["state"]).with_changes(shown=(), last=())
    rec.ranker = _Unreachable()
    notices = []
    alone = rec.rank(state, rec.retriever.retrieve(state, rec.n_candidates), None, notices)
    assert notices == [DEGRADED_RANKING]
    assert [(it["id"], it["score"]) for it in items] == \
        [(r.item_id, round(r.score, 4)) for r in alone]


class _Unreachable:
    def rank(self, state, cands):
        raise BackendError("cannot reach the LLM server")


# Chroma index missing or damaged ---------------------------------------------------------

def _segment_dirs(index: Path) -> list[Path]:
    return [p for p in index.iterdir() if p.is_dir()]


def _delete_segments(index: Path) -> None:
    for seg in _segment_dirs(index):
        shutil.rmtree(seg)


def _scramble_segments(index: Path) -> None:
    for seg in _segment_dirs(index):
        for f in seg.iterdir():
            f.write_bytes(os.urandom(200))


DAMAGE = {  # what is done to the index folder -> the fix the error must name
    "folder missing": (lambda index: shutil.rmtree(index), "run `tailor index"),
    "sqlite garbage": (lambda index: (index / "chroma.sqlite3").write_bytes(os.urandom(100_000)),
                       "delete that folder and run `tailor index`"),
    "sqlite truncated": (lambda index: os.truncate(index / "chroma.sqlite3", 4096),
                         "delete that folder and run `tailor index`"),
    "segments deleted": (_delete_segments, "run `tailor index"),
    "segments garbage": (_scramble_segments, "run `tailor index"),
}


@pytest.fixture(scope="module")
def real_embedder(real_settings):
    from agent.data.assets import prepare_embedder
    from agent.retrieve.embeddings import SentenceEmbedder

    return SentenceEmbedder(str(prepare_embedder(real_settings, log=lambda m: None)))


@pytest.mark.assets
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_missing_or_damaged_index_is_an_asset_error_naming_the_fix(real_settings,
                                                                     real_embedder, tmp_path,
                                                                     damage):
    from agent.retrieve.index import make_client, open_collection

    home = home_with_index_copy(tmp_path, real_settings.home)
    harm, fix = DAMAGE[damage]
    harm(home / "index")
    settings = real_settings.__class__(home=home)
    with pytest.raises(AssetError, match="Chroma index") as caught:
        open_collection(make_client(settings), real_embedder, settings.dataset)
    assert fix in str(caught.value)


@pytest.mark.assets
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["sqlite garbage", "segments deleted"])
def test_tailor_ask_on_a_damaged_index_exits_2_with_the_fix_and_no_trace(real_settings,
                                                                         tmp_path, damage):
    home = home_with_index_copy(tmp_path, real_settings.home)
    harm, fix = DAMAGE[damage]
    harm(home / "index")
    out = subprocess.run([sys.executable, "-m", "agent", "ask", ISSUE_QUERY],
                         capture_output=True, text=True, env=subprocess_env(home), timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert "Traceback" not in out.stderr and "Chroma index" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("tailor: ") and fix in out.stderr


def test_tailor_index_rebuilds_an_index_whose_vectors_are_gone(tmp_path):
    """The fix the errors name works: `tailor index` (build_index) rebuilds a collection
    whose segment files were deleted instead of calling it up to date."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings

    from agent.data.catalog import Catalog
    from agent.retrieve.index import build_index, open_collection
    from agent.domain.movielens.film import film

    def client(path):
        return chromadb.PersistentClient(path=str(path),
                                         settings=ChromaSettings(anonymized_telemetry=False))

    # Chroma writes vectors to a segment folder only past ~1,000 items; fewer stay in its
    # SQLite log, where there is nothing to damage.
    items = [film(i, f"Film {i}", 1950 + i % 50, ("Drama",), (), (), popularity=i)
             for i in range(1, 1101)]
    one = np.array([1])
    catalog = Catalog(items, {"dataset": "synthetic"}, one.astype(np.int32),
                      one.astype(np.int32), one.astype(np.int64), head={1})
    emb = HashEmbedder()
    assert build_index(client(tmp_path / "built"), catalog, emb, "syn",
                       log=lambda m: None)["rebuilt"]
    # Chroma keeps an open store per path in the process: damage a copy at a new path.
    shutil.copytree(tmp_path / "built", tmp_path / "damaged")
    assert _segment_dirs(tmp_path / "damaged")
    _delete_segments(tmp_path / "damaged")
    damaged = client(tmp_path / "damaged")
    with pytest.raises(AssetError, match="damaged.*run `tailor index"):
        open_collection(damaged, emb, "syn")
    notes = []
    assert build_index(damaged, catalog, emb, "syn", log=notes.append)["rebuilt"]
    assert any("damaged" in n for n in notes)
    col = open_collection(damaged, emb, "syn")
    assert col.count() == 1100 and col.get(ids=["5"], include=["embeddings"])["ids"] == ["5"]


# The API killed while it stores feedback -------------------------------------------------

API_KEY = "fault-test-key"
SESSIONS, THREADS, PER_THREAD = 4, 8, 150  # 1,200 distinct (session, item) feedbacks planned
KILL_AT_ACKS = 60


class ApiServer:
    """`tailor serve` on a free port in its own process group. The LLM URL points at a
    closed port: feedback never needs the model, and start-up skips loading it."""

    def __init__(self, home: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = subprocess_env(home, TAILOR_API_KEY=API_KEY, TAILOR_LLM_MODEL="none",
                             TAILOR_LLM_URL=f"http://127.0.0.1:{free_port()}/v1")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--port",
                                          str(self.port)], stdout=out, stderr=out, env=env,
                                         start_new_session=True)
        self.log = log
        deadline = time.monotonic() + 120
        while self.call("GET", "/health", check=False) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail("tailor serve did not come up:\n" + log.read_text()[-3000:])
            time.sleep(0.1)

    def call(self, method: str, path: str, body: dict | None = None, check: bool = True):
        """The JSON answer, or None when the server could not be reached (check=False)."""
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {API_KEY}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, OSError):
            if check:
                raise
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.mark.integration
@pytest.mark.assets
@pytest.mark.slow
def test_kill_9_of_the_api_during_feedback_writes_loses_no_acknowledged_feedback(
        real_settings, tmp_path):
    home = home_with_index_copy(tmp_path, real_settings.home)
    log = tmp_path / "serve.log"
    server = ApiServer(home, log)
    try:
        sessions = [server.call("POST", "/v1/sessions")["id"] for _ in range(SESSIONS)]
        acked, failed, lock = [], [], threading.Lock()

        def client(t: int) -> None:
            sid = sessions[t % SESSIONS]
            for k in range(PER_THREAD):  # items are distinct per session: no overwrites
                item, value = 1 + t * PER_THREAD + k, ("like", "dislike")[k % 2]
                if server.call("POST", f"/v1/sessions/{sid}/feedback",
                               {"item_id": item, "value": value}, check=False) is None:
                    with lock:
                        failed.append((sid, item, value))
                    return  # the server is gone
                with lock:
                    acked.append((sid, item, value))

        threads = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 120
        while len(acked) < KILL_AT_ACKS and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()  # SIGKILL while the clients are still sending
        for th in threads:
            th.join(timeout=60)
    finally:
        server.kill()
    assert len(acked) >= KILL_AT_ACKS, log.read_text()[-3000:]
    assert failed and len(acked) < THREADS * PER_THREAD  # the kill cut the stream short

    restarted = ApiServer(home, log)  # the same data home, so the same sessions database
    try:
        states = {sid: restarted.call("POST", f"/v1/sessions/{sid}/feedback",
                                      {"item_id": 1682, "value": "like"})["state"]
                  for sid in sessions}
    finally:
        restarted.kill()
    for sid, item, value in acked:
        assert item in states[sid]["liked" if value == "like" else "disliked"], (sid, item)
    store = SessionStore(home / "sessions.sqlite3")
    stored = {(f["session_id"], f["item_id"], f["value"]) for f in store.feedback()}
    assert set(acked) <= stored
    with store._connect() as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
