"""Durable sessions: dialogue state, turns and feedback.

One interface, two stores: ``SessionStore`` (SQLite in WAL mode, the embedded default)
and ``agent.interfaces.pg_store.PostgresStore`` (``TAILOR_STORE_URL=postgresql://...``,
shared by API replicas). Each store's schema is a numbered list of migrations, applied
in order and recorded in ``schema_version``; ``open_store`` picks the store from the
settings."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from agent.errors import InputError
from agent.types import DialogueState

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Migration N brings a store from version N-1 to N; a store records the last applied.
# (Version 1 is the schema stores had before versioning: IF NOT EXISTS keeps it a no-op
# on those.)
MIGRATIONS = (
    (1, """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL REFERENCES sessions(id), idx INTEGER NOT NULL,
    message TEXT NOT NULL, reply TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (session_id, idx));
CREATE TABLE IF NOT EXISTS feedback (
    session_id TEXT NOT NULL REFERENCES sessions(id), item_id INTEGER NOT NULL,
    value TEXT NOT NULL CHECK (value IN ('like', 'dislike')), at REAL NOT NULL);
"""),
    (2, "CREATE INDEX IF NOT EXISTS feedback_session ON feedback (session_id);"),
)
FEEDBACK = ("like", "dislike")


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _ID.match(session_id):
        raise InputError("a session id is 1-64 letters, digits, '.', '_' or '-'")
    return session_id


class SessionStore:
    """One SQLite file; each method is one short transaction."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.version = self._migrate()

    def _migrate(self) -> int:
        """Apply the migrations this file lacks, each with its version, in one
        transaction (BEGIN IMMEDIATE: a second process waits instead of racing)."""
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            current = apply_migrations(con.execute, MIGRATIONS, "?")
            con.execute("COMMIT")
            return current
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextmanager
    def _connect(self, write: bool = False):
        """A connection for one transaction: committed on success, always closed.
        ``write``: take the write lock first (BEGIN IMMEDIATE), so a read-then-write
        (the next turn's number) cannot race another process's."""
        con = sqlite3.connect(self.path, timeout=10)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives a crash
            with con:
                if write:
                    con.execute("BEGIN IMMEDIATE")
                yield con
        finally:
            con.close()

    def create(self, session_id: str | None = None) -> str:
        session_id = check_session_id(session_id) if session_id else uuid.uuid4().hex
        now = time.time()
        with self._connect() as con:
            con.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?)",
                        (session_id, json.dumps(DialogueState().to_dict()), now, now))
        return session_id

    def load(self, session_id: str) -> DialogueState | None:
        with self._connect() as con:
            row = con.execute("SELECT state FROM sessions WHERE id = ?",
                              (check_session_id(session_id),)).fetchone()
        return DialogueState.from_dict(json.loads(row[0])) if row else None

    def save_turn(self, session_id: str, message: str, reply_json: dict, state: DialogueState) -> None:
        now = time.time()
        with self._connect(write=True) as con:
            con.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?)",
                        (session_id, json.dumps(state.to_dict()), now, now))
            (n,) = con.execute("SELECT COUNT(*) FROM turns WHERE session_id = ?",
                               (session_id,)).fetchone()
            con.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?)",
                        (session_id, n, message, json.dumps(reply_json), now))
            con.execute("UPDATE sessions SET state = ?, updated = ? WHERE id = ?",
                        (json.dumps(state.to_dict()), now, session_id))

    def exists(self, session_id: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM sessions WHERE id = ?",
                               (check_session_id(session_id),)).fetchone() is not None

    def add_feedback(self, session_id: str, item_id: int, value: str) -> DialogueState:
        """Record a like or dislike and fold it into the session's state, in one
        transaction: once this returns, both are on disk (synchronous=FULL)."""
        if value not in FEEDBACK:
            raise InputError(f"feedback is 'like' or 'dislike', not {value!r}")
        with self._connect(write=True) as con:
            row = con.execute("SELECT state FROM sessions WHERE id = ?",
                              (check_session_id(session_id),)).fetchone()
            if row is None:
                raise InputError(f"no session {session_id!r}")
            state = DialogueState.from_dict(json.loads(row[0]))
            state = apply_feedback(state, item_id, value)
            now = time.time()
            con.execute("INSERT INTO feedback VALUES (?, ?, ?, ?)", (session_id, item_id, value, now))
            con.execute("UPDATE sessions SET state = ?, updated = ? WHERE id = ?",
                        (json.dumps(state.to_dict()), now, session_id))
        return state

    def feedback(self, session_id: str | None = None) -> list[dict]:
        """Stored feedback (for one session, or all: ``tailor finetune --include-feedback``)."""
        query = "SELECT session_id, item_id, value, at FROM feedback"
        args: tuple = ()
        if session_id is not None:
            query, args = query + " WHERE session_id = ?", (check_session_id(session_id),)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY rowid", args).fetchall()
        return [{"session_id": s, "item_id": i, "value": v, "at": a} for s, i, v, a in rows]

    def turns(self, session_id: str) -> list[dict]:
        with self._connect() as con:
            rows = con.execute("SELECT message, reply FROM turns WHERE session_id = ? ORDER BY idx",
                               (check_session_id(session_id),)).fetchall()
        return [{"message": m, "reply": json.loads(r)} for m, r in rows]


def apply_migrations(execute, migrations, mark: str) -> int:
    """Apply the ``migrations`` newer than the store's recorded version, recording each,
    through ``execute`` (inside the caller's transaction; ``mark``: the driver's
    parameter placeholder). Returns the version now."""
    execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    (current,) = execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    for version, sql in migrations:
        if version > current:
            for statement in filter(str.strip, sql.split(";")):
                execute(statement)
            execute(f"INSERT INTO schema_version VALUES ({mark})", (version,))
            current = version
    return current


def open_store(settings):
    """The store the settings name: PostgreSQL at ``store_url``, else the SQLite file
    under the data home."""
    if settings.store_url:
        from agent.interfaces.pg_store import PostgresStore

        return PostgresStore(settings.store_url)
    return SessionStore(settings.sessions_db)


def apply_feedback(state: DialogueState, item_id: int, value: str) -> DialogueState:
    """A like makes the item a liked one (no longer disliked) and vice versa; the
    item counts as shown either way, so it is not recommended again."""
    liked = [i for i in state.liked if i != item_id]
    disliked = [i for i in state.disliked if i != item_id]
    (liked if value == "like" else disliked).append(item_id)
    shown = state.shown if item_id in state.shown else state.shown + (item_id,)
    return state.with_changes(liked=tuple(liked), disliked=tuple(disliked), shown=shown)
