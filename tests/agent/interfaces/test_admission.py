"""Admission control: a bounded number of turns run and wait; beyond that a turn is
refused at once with 429 and Retry-After, and a slot freed lets the next one in. Two
messages to one session never interleave their state updates."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from agent.interfaces.admission import Admission, Shed
from agent.interfaces.api import create_app
from agent.interfaces.sessions import SessionStore
from agent.llm.fake import FakeBackend
from tests.agent.turn.test_recommender import make

KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}


def _in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("value", _catch(fn)))
    t.start()
    return t, out


def _catch(fn):
    try:
        return fn()
    except Exception as e:  # the thread's outcome, for the test to read
        return e


def test_a_full_gate_sheds_at_once_and_a_released_slot_admits_the_next():
    gate = Admission(max_inflight=1, max_queue=1)
    first = gate.enter()
    waiter, got = _in_thread(gate.enter)  # waits in the queue
    deadline = time.monotonic() + 5
    while gate.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.waiting == 1
    t0 = time.perf_counter()
    with pytest.raises(Shed) as shed:
        gate.enter()
    assert time.perf_counter() - t0 < 0.5 and shed.value.retry_after >= 1
    first.release()
    first.release()  # a second release is a no-op, not a freed slot
    waiter.join(5)
    assert not isinstance(got["value"], Exception) and gate.inflight == 1
    got["value"].release()
    assert gate.stats() | {"turn_s": 0} == {"inflight": 0, "waiting": 0, "max_inflight": 1,
                                           "max_queue": 1, "admitted": 2, "shed": 1,
                                           "turn_s": 0}


def test_a_turn_that_waited_its_share_is_shed_not_queued_on():
    gate = Admission(max_inflight=1, max_queue=4, wait_s=0.2)
    held = gate.enter()
    with pytest.raises(Shed):
        gate.enter()
    held.release()
    assert gate.stats()["shed"] == 1 and gate.enter()


class Slow:
    """A recommender whose turns wait until the test lets them finish."""

    def __init__(self, inner):
        self.inner, self.go, self.started = inner, threading.Event(), threading.Semaphore(0)
        self.catalog = inner.catalog

    def turn(self, text, state=None):
        self.started.release()
        self.go.wait(10)
        return self.inner.turn(text, state)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_api_answers_429_with_retry_after_when_full(catalog, tmp_path):
    rec = Slow(make(catalog, FakeBackend()))
    app = create_app(rec, SessionStore(tmp_path / "s.sqlite3"), KEY, "fake",
                     admission=Admission(max_inflight=1, max_queue=0))
    c = TestClient(app, raise_server_exceptions=False)
    a, b = (c.post("/v1/sessions", headers=AUTH).json()["id"] for _ in range(2))
    busy, got = _in_thread(lambda: c.post(f"/v1/sessions/{a}/messages", headers=AUTH,
                                          json={"content": "I loved Alien"}))
    assert rec.started.acquire(timeout=10)  # the first turn holds the only slot
    r = c.post(f"/v1/sessions/{b}/messages", headers=AUTH, json={"content": "a comedy"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["type"] == "overloaded"
    r = c.post("/v1/chat/completions", headers=AUTH,
               json={"messages": [{"role": "user", "content": "a comedy"}]})
    assert r.status_code == 429  # the stateless turn counts too
    assert c.post(f"/v1/sessions/{b}/feedback", headers=AUTH,
                  json={"item_id": next(iter(catalog.items)), "value": "like"}).status_code == 200
    rec.go.set()
    busy.join(10)
    assert got["value"].status_code == 200
    r = c.post(f"/v1/sessions/{b}/messages", headers=AUTH, json={"content": "a comedy"})
    assert r.status_code == 200  # the slot came back
    assert "I loved Alien" not in str(c.post(f"/v1/sessions/{b}/messages", headers=AUTH,
                                             json={"content": "more"}).json()["state"])


def test_two_messages_to_one_session_never_interleave(catalog, tmp_path):
    """Both turns' messages end up in the session, in one order or the other: the
    second turn starts from the state the first saved."""
    rec = make(catalog, FakeBackend())
    store = SessionStore(tmp_path / "s.sqlite3")
    inner_turn, active, overlaps = rec.turn, [0], []

    def turn(text, state=None):
        active[0] += 1
        overlaps.append(active[0])
        time.sleep(0.05)
        try:
            return inner_turn(text, state)
        finally:
            active[0] -= 1
    rec.turn = turn
    c = TestClient(create_app(rec, store, KEY, "fake"), raise_server_exceptions=False)
    sid = c.post("/v1/sessions", headers=AUTH).json()["id"]
    threads = [_in_thread(lambda m=m: c.post(f"/v1/sessions/{sid}/messages", headers=AUTH,
                                              json={"content": m}))
               for m in ("I loved Alien", "I loved Toy Story")]
    for t, _ in threads:
        t.join(10)
    assert [o["value"].status_code for _, o in threads] == [200, 200]
    assert max(overlaps) == 1  # never two turns of one session at once
    liked = store.load(sid).liked
    assert len(liked) == 2  # neither turn overwrote the other's like


def test_each_key_has_its_own_rate_of_turns(catalog, tmp_path):
    """Two clients, two keys: one spending its burst gets 429 with Retry-After; the other
    key, and the cheap endpoints, are unaffected; a wrong key is still a 401."""
    keys = ("a" * 32, "b" * 32)
    app = create_app(make(catalog, FakeBackend()), SessionStore(tmp_path / "s.sqlite3"),
                     ",".join(keys), "fake", rate_limit=6.0)  # 6 a minute, bursts of 1
    c = TestClient(app, raise_server_exceptions=False)
    auth = [{"Authorization": f"Bearer {k}"} for k in keys]
    sid = c.post("/v1/sessions", headers=auth[0]).json()["id"]

    def turn(h):
        return c.post(f"/v1/sessions/{sid}/messages", headers=h, json={"content": "a comedy"})
    assert turn(auth[0]).status_code == 200
    limited = turn(auth[0])
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 10
    assert limited.json()["error"]["type"] == "overloaded"
    assert turn(auth[1]).status_code == 200  # the other key's own budget
    assert c.post("/v1/sessions", headers=auth[0]).status_code == 200  # not a turn
    assert c.post("/v1/chat/completions", headers=auth[0], json={
        "messages": [{"role": "user", "content": "a comedy"}]}).status_code == 429
    assert turn({"Authorization": "Bearer " + "c" * 32}).status_code == 401


def test_a_bucket_refills_at_its_rate(monkeypatch):
    from agent.interfaces import admission as A

    clock = [100.0]
    monkeypatch.setattr(A.time, "monotonic", lambda: clock[0])
    rates = A.KeyRates(per_minute=60.0)  # one a second, bursts of 10
    assert all(rates.take(0) is None for _ in range(10))
    assert rates.take(0) == 1
    clock[0] += 2.5
    assert rates.take(0) is None and rates.take(0) is None and rates.take(0) == 1
    assert rates.take(1) is None  # another key
