"""Two `tailor serve` replicas sharing one PostgreSQL store behind an nginx reverse proxy:
a conversation started through the proxy continues on either replica, feedback posted to
either is seen by both, and when one is killed mid-conversation the proxy sends the
rest to the other, with nothing acknowledged lost.

Real processes, the real model and data, a real PostgreSQL server (tests/postgres.py),
Debian's nginx with the README's configuration (tests/nginx.py).
Each replica reads its own copy of the index, as the benchmark's server does (two
processes never share one on-disk Chroma store; a deployment points both at a Chroma
server, README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from bench.servers import api_home, free_port, stop_group
from tests.nginx import running_nginx

pytestmark = [pytest.mark.assets, pytest.mark.integration]
KEY = "r" * 32


def _call(url: str, body: dict | None = None, method: str = "POST", timeout: float = 120):
    req = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method=method,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _start(home, pg_url: str, log):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update(TAILOR_HOME=str(home), TAILOR_STORE_URL=pg_url, TAILOR_API_KEY=KEY,
               TAILOR_SASREC_EPOCHS=os.environ.get("TAILOR_SASREC_EPOCHS", "0"),
               HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_up(proc, url: str, log_path, wait_s: float = 300) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait_s:
        if proc.poll() is not None:
            pytest.fail(f"replica exited: {log_path.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"replica not up in {wait_s} s: {log_path.read_text()[-2000:]}")


def test_a_conversation_survives_the_loss_of_its_replica(real_settings, pg_url, tmp_path):
    procs = []
    try:
        urls = []
        for name in ("a", "b"):
            home = api_home(real_settings, tmp_path / name)
            log = open(tmp_path / f"{name}.log", "wb")
            proc, url = _start(home, pg_url, log)
            procs.append(proc), urls.append(url)
        for proc, url, name in zip(procs, urls, "ab"):
            _wait_up(proc, url, tmp_path / f"{name}.log")
        a, b = urls
        with running_nginx([u.removeprefix("http://") for u in urls]) as proxy:
            _converse(proxy, a, b, procs[0], pg_url)
    finally:
        for proc in procs:
            stop_group(proc)


def _converse(proxy: str, a: str, b: str, replica_a, pg_url: str) -> None:
    """One conversation through the proxy and both replicas; ``a`` dies mid-way."""
    from agent.interfaces.pg_store import PostgresStore

    sid = _call(proxy + "/v1/sessions")["id"]
    first = _call(f"{proxy}/v1/sessions/{sid}/messages", {"content": "I loved Alien"})
    alien = first["state"]["liked"]
    assert alien and first["items"]
    pick = first["items"][0]["id"]
    liked = _call(f"{b}/v1/sessions/{sid}/feedback", {"item_id": pick, "value": "like"})
    assert pick in liked["state"]["liked"]  # posted to b, whichever replica answered first
    second = _call(f"{a}/v1/sessions/{sid}/messages", {"content": "something from the 90s"})
    assert pick in second["state"]["liked"]  # a sees b's feedback
    # a dies while a third turn may be in flight: that turn was never acknowledged
    threading.Thread(target=lambda: _swallow(
        lambda: _call(f"{a}/v1/sessions/{sid}/messages", {"content": "more like that"},
                      timeout=30)), daemon=True).start()
    time.sleep(0.3)
    os.killpg(replica_a.pid, 9)
    replica_a.wait(30)
    # through the proxy again: round robin sends one of these two to the dead replica,
    # which refuses the connection, and nginx passes it to b (a turn never sent is safe
    # to pass on); the user sees two answers
    third = _call(f"{proxy}/v1/sessions/{sid}/messages", {"content": "a comedy this time"})
    state = third["state"]
    assert set(alien) | {pick} <= set(state["liked"]) and state["genres"] == ["Comedy"]
    fourth = _call(f"{proxy}/v1/sessions/{sid}/messages", {"content": "something lighter"})
    assert fourth["items"] and set(alien) | {pick} <= set(fourth["state"]["liked"])
    store = PostgresStore(pg_url)
    try:
        turns = [t["message"] for t in store.turns(sid)]
    finally:
        store.close()
    acknowledged = ["I loved Alien", "something from the 90s", "a comedy this time",
                    "something lighter"]
    assert [m for m in turns if m in acknowledged] == acknowledged
    assert len(turns) in (4, 5)  # the killed turn: saved whole or not at all


def _swallow(fn) -> None:
    try:
        fn()
    except (urllib.error.URLError, OSError):
        pass  # the replica was killed under it: expected
