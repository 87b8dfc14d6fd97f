import json

import pytest
from fastapi.testclient import TestClient

from agent.interfaces.api import create_app
from agent.interfaces.sessions import SessionStore
from agent.llm.fake import FakeBackend
from tests.agent.turn.test_recommender import make

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "sessions.sqlite3"


def client(catalog, db, key=KEY):
    app = create_app(make(catalog, FakeBackend()), SessionStore(db), key, "fake-model")
    return TestClient(app, raise_server_exceptions=False)


def new_session(c) -> str:
    r = c.post("/v1/sessions", headers=AUTH)
    assert r.status_code == 200
    return r.json()["id"]


def test_a_session_turn_returns_catalog_items_explanations_and_state(catalog, db):
    c = client(catalog, db)
    sid = new_session(c)
    r = c.post(f"/v1/sessions/{sid}/messages", json={"content": "I loved Alien, sci-fi"},
               headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"text", "items", "state", "notices"}
    assert body["items"] and all(it["id"] in catalog for it in body["items"])
    assert all(it["explanation"] for it in body["items"])
    assert body["state"]["liked"] == [1] and "Sci-Fi" in body["state"]["genres"]
    for it in body["items"]:  # the schema's facts, the same shape a shop's items have
        film = catalog.get(it["id"])
        assert it["facts"]["genres"] == list(film.values("genres")) and "popularity" not in it["facts"]
        assert it["facts"].get("year") == film.value("year") and it["year"] == film.value("year")


def test_feedback_is_stored_and_changes_the_next_turn(catalog, db):
    c = client(catalog, db)
    sid = new_session(c)
    first = c.post(f"/v1/sessions/{sid}/messages", json={"content": "sci-fi please"},
                   headers=AUTH).json()
    disliked = first["items"][0]["id"]
    r = c.post(f"/v1/sessions/{sid}/feedback", json={"item_id": disliked, "value": "dislike"},
               headers=AUTH)
    assert r.status_code == 200 and disliked in r.json()["state"]["disliked"]
    again = c.post(f"/v1/sessions/{sid}/messages", json={"content": "more sci-fi"},
                   headers=AUTH).json()
    assert disliked not in [it["id"] for it in again["items"]]
    assert SessionStore(db).feedback(sid) == [
        {"session_id": sid, "item_id": disliked, "value": "dislike",
         "at": SessionStore(db).feedback(sid)[0]["at"]}]


def test_sessions_and_feedback_survive_a_restart(catalog, db):
    c = client(catalog, db)
    sid = new_session(c)
    c.post(f"/v1/sessions/{sid}/messages", json={"content": "I loved Alien"}, headers=AUTH)
    c.post(f"/v1/sessions/{sid}/feedback", json={"item_id": 3, "value": "like"}, headers=AUTH)
    restarted = client(catalog, db)  # a new app and store over the same file
    r = restarted.post(f"/v1/sessions/{sid}/messages", json={"content": "from the 90s"},
                       headers=AUTH)
    state = r.json()["state"]
    assert state["liked"] == [1, 3] and state["year_min"] == 1990
    assert len(SessionStore(db).turns(sid)) == 2


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": KEY}, {"Authorization": "Basic " + KEY}])
def test_every_endpoint_but_health_needs_the_key(catalog, db, headers):
    c = client(catalog, db)
    for path in ("/v1/sessions", "/v1/sessions/x/messages", "/v1/sessions/x/feedback",
                 "/v1/chat/completions"):
        r = c.post(path, json={}, headers=headers)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        assert "API key" in r.json()["error"]["message"]
    assert c.get("/health").json()["status"] == "ok"


def test_bad_input_gets_a_clear_message_and_changes_nothing(catalog, db):
    c = client(catalog, db)
    sid = new_session(c)
    cases = [
        (f"/v1/sessions/{sid}/messages", {"content": "   "}, 400, "empty"),
        (f"/v1/sessions/{sid}/messages", {"text": "hi"}, 422, "content"),
        (f"/v1/sessions/{sid}/feedback", {"item_id": 99999, "value": "like"}, 400, "not in the catalog"),
        (f"/v1/sessions/{sid}/feedback", {"item_id": 1, "value": "love"}, 422, "value"),
        ("/v1/sessions/nope/messages", {"content": "hi"}, 404, "no session"),
        ("/v1/sessions/bad%20id!/messages", {"content": "hi"}, 400, "session id"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": " "}], "stream": True},
         400, "empty"),
        ("/v1/chat/completions", {"messages": [{"role": "system", "content": "x"}]}, 400, "user"),
    ]
    for path, body, status, words in cases:
        r = c.post(path, json=body, headers=AUTH)
        assert r.status_code == status, (path, body, r.text)
        assert words in r.json()["error"]["message"], r.text
    r = c.post(f"/v1/sessions/{sid}/messages", content=b'{"content": "\xff\xfe"}',
               headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and "parsing the body" in r.json()["error"]["message"]
    assert SessionStore(db).turns(sid) == [] and SessionStore(db).feedback(sid) == []


def test_openai_compatible_chat_with_a_session_from_user_or_header(catalog, db):
    c = client(catalog, db)
    r = c.post("/v1/chat/completions", headers=AUTH, json={
        "model": "tailor", "user": "bot-42",
        "messages": [{"role": "system", "content": "You are a shop assistant."},
                     {"role": "user", "content": "I loved Alien"}]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"].startswith("Looking for")
    assert body["tailor"]["session"] == "bot-42" and body["tailor"]["items"]
    r = c.post("/v1/chat/completions", headers={**AUTH, "X-Tailor-Session": "bot-42"},
               json={"messages": [{"role": "user", "content": "from the 90s"}]})
    assert r.json()["tailor"]["state"]["liked"] == [1]  # remembered through the session


def sse_events(response) -> list:
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [line[len("data: "):] for line in response.text.split("\n\n") if line]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def test_streamed_chat_sends_the_picks_first_and_adds_up_to_the_plain_answer(catalog, db):
    c = client(catalog, db)
    ask = {"user": "bot-7", "messages": [{"role": "user", "content": "I loved Alien, sci-fi"}]}
    events = sse_events(c.post("/v1/chat/completions", headers=AUTH, json={**ask, "stream": True}))
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant"}
    picks = events[1]["tailor"]["items"]
    assert picks and all(i["explanation"] == "" for i in picks)  # before explanations
    final = events[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert [i["id"] for i in final["tailor"]["items"]] == [i["id"] for i in picks]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text == final["tailor"]["text"] and text.startswith("Looking for")
    assert SessionStore(db).load("bot-7").liked == (1,)  # the turn was stored
    plain = c.post("/v1/chat/completions", headers=AUTH,
                   json={"messages": [{"role": "user", "content": "I loved Alien, sci-fi"}]})
    assert [i["id"] for i in plain.json()["tailor"]["items"]] == [i["id"] for i in picks]


def test_stateless_chat_builds_the_state_from_earlier_user_messages(catalog, db):
    c = client(catalog, db)
    r = c.post("/v1/chat/completions", headers=AUTH, json={"messages": [
        {"role": "user", "content": "I loved Alien"}, {"role": "assistant", "content": "..."},
        {"role": "user", "content": "something from the 90s"}]})
    state = r.json()["tailor"]["state"]
    assert state["liked"] == [1] and state["year_min"] == 1990
    assert r.json()["tailor"]["session"] is None


def test_a_failing_recommender_is_a_500_with_a_plain_message(catalog, db):
    class Exploding:
        catalog = None

        def turn(self, *a):
            raise RuntimeError("secret internals")

    app = create_app(Exploding(), SessionStore(db), None, "x")
    c = TestClient(app, raise_server_exceptions=False)
    sid = c.post("/v1/sessions").json()["id"]
    r = c.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"})
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text


def test_openapi_schema_lists_the_contract(catalog, db):
    paths = client(catalog, db).get("/openapi.json").json()["paths"]
    assert {"/v1/sessions", "/v1/sessions/{session_id}/messages",
            "/v1/sessions/{session_id}/feedback", "/v1/chat/completions", "/health"} <= set(paths)


def test_serve_refuses_a_public_address_without_a_key(tmp_path):
    from agent.errors import ConfigError
    from agent.interfaces.api import serve
    from agent.settings import Settings

    with pytest.raises(ConfigError, match="TAILOR_API_KEY"):
        serve(Settings(home=tmp_path), "0.0.0.0", 8080, log_fn=lambda m: None)


@pytest.mark.parametrize("item_id", [True, False, 1.0, 1.5, "3", "1", None, [1]])
def test_feedback_item_id_must_be_a_real_integer(catalog, db, item_id):
    c = client(catalog, db)
    sid = new_session(c)
    before = c.post(f"/v1/sessions/{sid}/feedback", json={"item_id": 2, "value": "dislike"},
                    headers=AUTH).json()["state"]
    r = c.post(f"/v1/sessions/{sid}/feedback", json={"item_id": item_id, "value": "like"},
               headers=AUTH)
    assert r.status_code == 422, r.text
    assert "item_id" in r.json()["error"]["message"]
    store = SessionStore(db)
    assert [f["item_id"] for f in store.feedback(sid)] == [2]  # no like stored
    assert store.load(sid).liked == ()
    assert json.loads(json.dumps(store.load(sid).to_dict())) == before  # state unchanged


@pytest.mark.parametrize("path, body, field", [
    ("messages", {"content": 5}, "content"),
    ("messages", {"content": True}, "content"),
    ("feedback", {"item_id": 1, "value": 1}, "value"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "stream": "true"}, "stream"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "stream": 1}, "stream"),
    ("chat", {"messages": [{"role": "user", "content": 7}]}, "content"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "user": 12}, "user"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "model": 1.0}, "model"),
])
def test_request_bodies_are_not_coerced(catalog, db, path, body, field):
    c = client(catalog, db)
    sid = new_session(c)
    url = "/v1/chat/completions" if path == "chat" else f"/v1/sessions/{sid}/{path}"
    r = c.post(url, json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["message"]
    assert SessionStore(db).turns(sid) == [] and SessionStore(db).feedback(sid) == []


def test_strict_bodies_still_accept_well_typed_json(catalog, db):
    c = client(catalog, db)
    sid = new_session(c)
    r = c.post(f"/v1/sessions/{sid}/feedback", json={"item_id": 3, "value": "like"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["state"]["liked"] == [3]
    r = c.post("/v1/chat/completions", headers=AUTH, json={
        "model": "tailor", "user": "bot-1", "stream": False,
        "messages": [{"role": "system", "content": None}, {"role": "user", "content": "sci-fi"}]})
    assert r.status_code == 200 and r.json()["tailor"]["items"]
