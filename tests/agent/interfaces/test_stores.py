"""One suite, both session stores: SQLite (the embedded default) and PostgreSQL (what
API replicas share), the latter on a real server (tests/postgres.py). State, turns and
feedback survive a new store object; bad input changes nothing; concurrent turns of one
session from two store objects (two replicas) are all kept, numbered in order; the
schema is migrated by version, once."""

from __future__ import annotations

import sqlite3
import threading
import uuid

import pytest

from agent.errors import ConfigError, InputError
from agent.interfaces import sessions
from agent.interfaces.sessions import SessionStore, open_store
from agent.types import DialogueState


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request, tmp_path):
    """A factory of store objects over one shared store (a second call: a second
    process or replica on the same data)."""
    made = []
    if request.param == "sqlite":
        def make():
            return SessionStore(tmp_path / "s.sqlite3")
    else:
        from agent.interfaces.pg_store import PostgresStore

        url = request.getfixturevalue("pg_url")

        def make():
            made.append(PostgresStore(url, max_connections=4))
            return made[-1]
    yield make
    for store in made:
        store.close()


def _sid() -> str:
    return uuid.uuid4().hex  # the PostgreSQL server is shared by the tests: unique ids


def test_state_turns_and_feedback_survive_a_new_store(make_store):
    store, sid = make_store(), _sid()
    assert store.create(sid) == sid and store.exists(sid)
    assert store.load(sid) == DialogueState()
    state = DialogueState(liked=(3,), genres=("Comedy",))
    store.save_turn(sid, "a comedy like 3", {"text": "one"}, state)
    store.save_turn(sid, "more", {"text": "two"}, state.with_changes(liked=(3, 7)))
    after = store.add_feedback(sid, 9, "dislike")
    assert after.disliked == (9,) and 9 in after.shown
    again = make_store()
    assert again.load(sid) == after
    assert [t["message"] for t in again.turns(sid)] == ["a comedy like 3", "more"]
    assert again.turns(sid)[1]["reply"] == {"text": "two"}
    assert [(f["item_id"], f["value"]) for f in again.feedback(sid)] == [(9, "dislike")]
    assert again.create(sid) == sid and again.load(sid) == after  # create is idempotent


def test_bad_input_is_refused_and_changes_nothing(make_store):
    store, sid = make_store(), _sid()
    store.create(sid)
    for bad in ("", "a b", "x" * 65, "../etc", "é"):
        with pytest.raises(InputError):
            store.load(bad)
    with pytest.raises(InputError, match="'like' or 'dislike'"):
        store.add_feedback(sid, 1, "love")
    with pytest.raises(InputError, match="no session"):
        store.add_feedback(_sid(), 1, "like")
    assert store.feedback(sid) == [] and store.load(sid) == DialogueState()
    assert store.load(_sid()) is None and not store.exists(_sid())


def test_concurrent_turns_of_one_session_from_two_stores_are_all_kept(make_store):
    a, b, sid = make_store(), make_store(), _sid()
    a.create(sid)
    errors = []

    def save(store, k):
        try:
            store.save_turn(sid, f"m{k}", {"k": k}, DialogueState(liked=(k,)))
        except Exception as e:  # the test reads every thread's failure
            errors.append(e)
    threads = [threading.Thread(target=save, args=((a, b)[k % 2], k)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    turns = a.turns(sid)
    assert sorted(t["reply"]["k"] for t in turns) == list(range(12))


def test_the_schema_is_migrated_by_version_once(make_store):
    first, second = make_store(), make_store()
    assert first.version == second.version == sessions.MIGRATIONS[-1][0]


def test_an_unversioned_sqlite_file_is_migrated_with_its_data(tmp_path):
    path = tmp_path / "old.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(sessions.MIGRATIONS[0][1])  # the schema before versioning
    con.execute("INSERT INTO sessions VALUES ('old', ?, 1, 1)",
                (__import__("json").dumps(DialogueState(liked=(5,)).to_dict()),))
    con.commit()
    con.close()
    store = SessionStore(path)
    assert store.version == sessions.MIGRATIONS[-1][0] and store.load("old").liked == (5,)
    rows = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall()
    assert [v for (v,) in rows] == [v for v, _ in sessions.MIGRATIONS]
    SessionStore(path)  # reopening applies nothing twice
    assert len(sqlite3.connect(path).execute("SELECT * FROM schema_version").fetchall()) == \
        len(sessions.MIGRATIONS)


def test_an_unreachable_store_is_a_clear_error_without_the_password():
    from agent.interfaces.pg_store import PostgresStore
    from tests.postgres import _free_port

    with pytest.raises(ConfigError) as e:
        PostgresStore(f"postgresql://tailor:s3cret@127.0.0.1:{_free_port()}/tailor")
    assert "cannot use the session store" in str(e.value) and "s3cret" not in str(e.value)
    with pytest.raises(ConfigError, match="postgresql:// URL"):
        PostgresStore("mysql://x")


def test_the_settings_pick_the_store(tmp_path, pg_url):
    from agent.interfaces.pg_store import PostgresStore
    from agent.settings import Settings

    assert isinstance(open_store(Settings(home=tmp_path)), SessionStore)
    store = open_store(Settings(home=tmp_path, store_url=pg_url))
    assert isinstance(store, PostgresStore)
    store.close()
    shown = Settings(store_url="postgresql://u:pw@h/db").public()["store_url"]
    assert shown == "postgresql://u:***@h/db"


def test_a_session_lock_holds_across_replicas(pg_url):
    """Two replicas (two stores, two lock tables) never run one session's turns at once;
    other sessions are not held up."""
    import time

    from agent.interfaces.admission import SessionLocks
    from agent.interfaces.pg_store import PostgresStore

    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        sid, other = _sid(), _sid()
        held, order = SessionLocks(a)(sid), []
        held.acquire()
        waiter = threading.Thread(target=lambda: (SessionLocks(b)(sid).__enter__(),
                                                  order.append("b got it")))
        waiter.start()
        with SessionLocks(b)(other):  # a different session: not blocked
            order.append("other")
        time.sleep(0.3)
        order.append("a releases")
        held.release()
        waiter.join(10)
        assert order == ["other", "a releases", "b got it"]
    finally:
        a.close()
        b.close()
