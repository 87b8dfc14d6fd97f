"""Admission control for the API's turns: load is shed, not queued without bound, and
each API key gets its own rate of turns.

At most ``max_inflight`` turns run at once in a process and at most ``max_queue`` more
wait for a slot; a turn beyond that is refused at once (the API answers 429 with a
Retry-After estimated from recent turn times) instead of waiting while every other
user's latency grows. Only turns are admitted this way: creating a session, feedback,
health and the catalog endpoints are cheap and always served.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Header, HTTPException, Request


@dataclass
class Ticket:
    """A turn's slot; ``release`` it exactly once when the turn (or its stream) ends."""

    gate: Admission
    started: float
    _done: bool = False

    def release(self) -> None:
        if not self._done:
            self._done = True
            self.gate._leave(time.perf_counter() - self.started)


class _NoLimit:
    """The ticket of an app without admission control."""

    def release(self) -> None:
        pass


NO_LIMIT = _NoLimit()


def admit(admission: Admission | None):
    """A slot for one turn (``NO_LIMIT`` without admission control), or the API's 429
    with Retry-After at once when running and waiting are full."""
    if admission is None:
        return NO_LIMIT
    try:
        return admission.enter()
    except Shed as e:
        raise HTTPException(429, str(e), headers={"Retry-After": str(e.retry_after)}) from None


class Shed(Exception):
    """No slot and no room to wait: answer 429 with ``retry_after`` seconds."""

    def __init__(self, retry_after: int, inflight: int, waiting: int):
        super().__init__(f"busy: {inflight} turns running and {waiting} waiting; retry in "
                         f"{retry_after} s")
        self.retry_after = retry_after


class Admission:
    """``enter()`` a turn (blocks while queued; raises ``Shed`` when full)."""

    def __init__(self, max_inflight: int, max_queue: int, wait_s: float = 30.0):
        if max_inflight < 1 or max_queue < 0:
            raise ValueError(f"need max_inflight >= 1 and max_queue >= 0, not {max_inflight}, "
                             f"{max_queue}")
        self.max_inflight, self.max_queue, self.wait_s = max_inflight, max_queue, wait_s
        self._cond = threading.Condition()
        self.inflight = self.waiting = 0
        self.turn_s = 1.0  # an exponential average of recent turn times, for Retry-After
        self.admitted = self.shed = 0

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the running
        rate, at least 1."""
        ahead = self.inflight + self.waiting
        return max(1, math.ceil(self.turn_s * ahead / self.max_inflight))

    def enter(self) -> Ticket:
        with self._cond:
            if self.inflight >= self.max_inflight and self.waiting >= self.max_queue:
                self.shed += 1
                raise Shed(self.retry_after(), self.inflight, self.waiting)
            self.waiting += 1
            deadline = time.monotonic() + self.wait_s
            try:
                while self.inflight >= self.max_inflight:
                    left = deadline - time.monotonic()
                    if left <= 0:  # waited its share: shed rather than wait on
                        self.shed += 1
                        raise Shed(self.retry_after(), self.inflight, self.waiting - 1)
                    self._cond.wait(left)
            finally:
                self.waiting -= 1
            self.inflight += 1
            self.admitted += 1
        return Ticket(self, time.perf_counter())

    def _leave(self, seconds: float) -> None:
        with self._cond:
            self.inflight -= 1
            self.turn_s = 0.8 * self.turn_s + 0.2 * seconds
            self._cond.notify()

    def stats(self) -> dict:
        with self._cond:
            return {"inflight": self.inflight, "waiting": self.waiting,
                    "max_inflight": self.max_inflight, "max_queue": self.max_queue,
                    "admitted": self.admitted, "shed": self.shed,
                    "turn_s": round(self.turn_s, 3)}


class SessionLocks:
    """One lock per session: two messages to one session run one after the other, so
    neither overwrites the state the other produced. With a store that locks sessions
    across processes (``PostgresStore.session_lock``), that lock is taken too, after
    this process's own (so waiting threads hold no database connection)."""

    def __init__(self, store=None):
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._shared = getattr(store, "session_lock", None)

    def __call__(self, session_id: str):
        with self._guard:
            local = self._locks.setdefault(session_id, threading.Lock())
        return local if self._shared is None else _Both(local, self._shared(session_id))


class _Both:
    """This process's lock, then the shared one; released in the other order."""

    def __init__(self, local: threading.Lock, shared):
        self.local, self.shared = local, shared

    def acquire(self) -> None:
        self.local.acquire()
        try:
            self.shared.acquire()
        except BaseException:
            self.local.release()
            raise

    def release(self) -> None:
        try:
            self.shared.release()
        finally:
            self.local.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def api_keys(setting: str | None) -> list[str] | None:
    """The keys ``TAILOR_API_KEY`` names (several, comma-separated: one per client);
    None serves without authentication.

    >>> api_keys("a1, b2"), api_keys(None)
    (['a1', 'b2'], None)
    """
    if not setting:
        return None
    return [k.strip() for k in setting.split(",") if k.strip()]


def matching_key(given: str, keys: list[str]) -> int | None:
    """The index of the key ``given`` is, comparing with every key in constant time (the
    time taken reveals neither how much matched nor which key)."""
    found = None
    for k, key in enumerate(keys):
        if hmac.compare_digest(given.encode(), key.encode()):
            found = k
    return found


class KeyRates:
    """A token bucket per API key: ``per_minute`` turns a minute, in bursts of up to a
    sixth of that (at least one)."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute / 6.0)
        self._buckets: dict[int, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: int) -> int | None:
        """None when a turn may run now; else the seconds until it may (a 429)."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))


def make_authorize(setting: str | None, per_minute: float = 0.0):
    """The API's auth dependency: a bearer key among ``api_keys(setting)`` (401 else)
    and, for turns, that key's rate (429 with Retry-After beyond it; ``per_minute`` 0:
    no limit)."""
    keys, rates = api_keys(setting), KeyRates(per_minute) if per_minute > 0 else None

    def authorize(request: Request, authorization: str | None = Header(None)) -> None:
        key = -1  # without keys (127.0.0.1 only) every caller shares one rate
        if keys is not None:
            scheme, _, given = (authorization or "").partition(" ")
            key = matching_key(given, keys) if scheme.lower() == "bearer" else None
            if key is None:
                raise HTTPException(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                    headers={"WWW-Authenticate": "Bearer"})
        path = request.url.path
        if rates is not None and (path.endswith("/messages") or path == "/v1/chat/completions"):
            wait = rates.take(key)
            if wait is not None:
                raise HTTPException(429, f"this key's rate of turns is used up; retry in {wait} s",
                                    headers={"Retry-After": str(wait)})
    return authorize


def add_stats_route(app, backend, admission: Admission | None, authorize) -> None:
    """``GET /v1/stats``: admission counters and the in-process model's work (forward
    passes, tokens, FLOPs, busy seconds) since start, for operators and the benchmark
    (its FLOP-limited throughput is counted from them). ``model`` is null for a model
    behind a server (vLLM reports its own metrics)."""
    from fastapi import Depends
    from pydantic import BaseModel, Field

    class StatsOut(BaseModel):
        admission: dict | None = Field(description="turns in flight, waiting, admitted, shed")
        model: dict | None = Field(description="the in-process model's work since start")

    @app.get("/v1/stats", dependencies=[Depends(authorize)], response_model=StatsOut,
             responses={401: {"description": "missing or wrong API key"}})
    def stats() -> dict:
        work = getattr(backend, "stats", None)
        return {"admission": admission.stats() if admission else None,
                "model": work() if callable(work) else None}
