"""The session store on PostgreSQL (``TAILOR_STORE_URL=postgresql://...``): what API
replicas share, so a conversation started on one continues on another.

Same interface and behaviour as the SQLite ``SessionStore``
(``tests/agent/interfaces/test_stores.py`` runs one suite on both), through psycopg 3
and a small connection pool. Its own numbered migrations, applied under an advisory
lock so replicas starting together migrate once. A turn's save locks its session's
row (``FOR UPDATE``), so two replicas saving turns of one session number them one
after the other.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from agent.errors import ConfigError, InputError
from agent.interfaces.sessions import (FEEDBACK, apply_feedback, apply_migrations,
                                       check_session_id)
from agent.types import DialogueState

MIGRATIONS = (
    (1, """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL REFERENCES sessions(id), idx INTEGER NOT NULL,
    message TEXT NOT NULL, reply TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, idx));
CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id),
    item_id INTEGER NOT NULL, value TEXT NOT NULL CHECK (value IN ('like', 'dislike')),
    at DOUBLE PRECISION NOT NULL);
"""),
    (2, "CREATE INDEX IF NOT EXISTS feedback_session ON feedback (session_id);"),
)
MIGRATION_LOCK = 727_001  # pg_advisory_xact_lock key: one migrator at a time


class SessionLock:
    """``acquire``/``release`` (or ``with``) a session's advisory lock."""

    def __init__(self, pool, session_id: str):
        self.pool, self.key = pool, session_id
        self._con = None

    def acquire(self) -> None:
        con = self.pool.getconn()
        try:
            con.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (self.key,))
            con.commit()
        except BaseException:
            self.pool.putconn(con)
            raise
        self._con = con

    def release(self) -> None:
        con, self._con = self._con, None
        if con is None:
            return
        try:
            con.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self.key,))
            con.commit()
        finally:
            self.pool.putconn(con)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def redact(url: str) -> str:
    """``url`` without its password, for messages.

    >>> redact("postgresql://tailor:s3cret@db:5432/tailor")
    'postgresql://tailor:***@db:5432/tailor'
    """
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


class PostgresStore:
    """Sessions, turns and feedback in PostgreSQL; each method is one transaction."""

    def __init__(self, url: str, max_connections: int = 20):
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"TAILOR_STORE_URL must be a postgresql:// URL, not "
                              f"{redact(url)!r}")
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = redact(url)
        self.pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False,
                                   kwargs={"connect_timeout": 10})
        try:
            psycopg.connect(url, connect_timeout=10).close()  # fails at once, the pool retries
            self.pool.open(wait=True, timeout=15)
            self.version = self._migrate()
        except Exception as e:  # psycopg's errors and the pool's own timeout
            self.pool.close()
            raise ConfigError(f"cannot use the session store at {self.url}: "
                              f"{type(e).__name__}: {str(e).strip()[:300]}") from None

    def close(self) -> None:
        self.pool.close()

    def session_lock(self, session_id: str) -> SessionLock:
        """A lock on one session across every replica (a PostgreSQL advisory lock held
        on its own connection for the turn), so two turns of a session never interleave
        their state updates even on two machines."""
        return SessionLock(self.pool, session_id)

    def _migrate(self) -> int:
        with self.pool.connection() as con, con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            return apply_migrations(con.execute, MIGRATIONS, "%s")

    def create(self, session_id: str | None = None) -> str:
        session_id = check_session_id(session_id) if session_id else uuid.uuid4().hex
        now = time.time()
        with self.pool.connection() as con:
            con.execute("INSERT INTO sessions VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                        (session_id, json.dumps(DialogueState().to_dict()), now, now))
        return session_id

    def load(self, session_id: str) -> DialogueState | None:
        with self.pool.connection() as con:
            row = con.execute("SELECT state FROM sessions WHERE id = %s",
                              (check_session_id(session_id),)).fetchone()
        return DialogueState.from_dict(json.loads(row[0])) if row else None

    def save_turn(self, session_id: str, message: str, reply_json: dict,
                  state: DialogueState) -> None:
        now, data = time.time(), json.dumps(state.to_dict())
        with self.pool.connection() as con, con.transaction():
            con.execute("INSERT INTO sessions VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                        (session_id, data, now, now))
            con.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session_id,))
            (n,) = con.execute("SELECT COUNT(*) FROM turns WHERE session_id = %s",
                               (session_id,)).fetchone()
            con.execute("INSERT INTO turns VALUES (%s, %s, %s, %s, %s)",
                        (session_id, n, message, json.dumps(reply_json), now))
            con.execute("UPDATE sessions SET state = %s, updated = %s WHERE id = %s",
                        (data, now, session_id))

    def exists(self, session_id: str) -> bool:
        with self.pool.connection() as con:
            return con.execute("SELECT 1 FROM sessions WHERE id = %s",
                               (check_session_id(session_id),)).fetchone() is not None

    def add_feedback(self, session_id: str, item_id: int, value: str) -> DialogueState:
        """A like or dislike, folded into the session's state in the same transaction."""
        if value not in FEEDBACK:
            raise InputError(f"feedback is 'like' or 'dislike', not {value!r}")
        with self.pool.connection() as con, con.transaction():
            row = con.execute("SELECT state FROM sessions WHERE id = %s FOR UPDATE",
                              (check_session_id(session_id),)).fetchone()
            if row is None:
                raise InputError(f"no session {session_id!r}")
            state = apply_feedback(DialogueState.from_dict(json.loads(row[0])), item_id, value)
            now = time.time()
            con.execute("INSERT INTO feedback (session_id, item_id, value, at) "
                        "VALUES (%s, %s, %s, %s)", (session_id, item_id, value, now))
            con.execute("UPDATE sessions SET state = %s, updated = %s WHERE id = %s",
                        (json.dumps(state.to_dict()), now, session_id))
        return state

    def feedback(self, session_id: str | None = None) -> list[dict]:
        query = "SELECT session_id, item_id, value, at FROM feedback"
        args: tuple = ()
        if session_id is not None:
            query, args = query + " WHERE session_id = %s", (check_session_id(session_id),)
        with self.pool.connection() as con:
            rows = con.execute(query + " ORDER BY id", args).fetchall()
        return [{"session_id": s, "item_id": i, "value": v, "at": a} for s, i, v, a in rows]

    def turns(self, session_id: str) -> list[dict]:
        with self.pool.connection() as con:
            rows = con.execute("SELECT message, reply FROM turns WHERE session_id = %s "
                               "ORDER BY idx", (check_session_id(session_id),)).fetchall()
        return [{"message": m, "reply": json.loads(r)} for m, r in rows]
