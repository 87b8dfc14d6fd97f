"""The UI's handlers as plain functions (the browser test drives the real page)."""

from agent.interfaces.app import ChatSession, card_html, new_session
from agent.interfaces.sessions import SessionStore
from agent.llm.fake import FakeBackend
from tests.agent.turn.test_recommender import make


def run(chat, message, history, session, tail=0.0, diversity=0.0):
    steps = list(chat.respond(message, history, session, tail, diversity))
    assert steps[0][0][-1]["content"].startswith("…")  # something shows at once
    return steps[-1]


def test_a_turn_fills_the_chat_and_the_cards_and_stores_the_session(catalog, tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    chat = ChatSession(make(catalog, FakeBackend()), store)
    session = new_session()
    history, session, cards = run(chat, "I loved Alien", [], session)
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["content"].startswith("*Looking for") and len(cards) == 2
    assert all("tailor-card" in c for c in cards)
    assert store.load(session["id"]).liked == (1,)


def test_like_and_dislike_change_the_next_turn(catalog, tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    chat = ChatSession(make(catalog, FakeBackend()), store)
    history, session, _ = run(chat, "sci-fi please", [], new_session())
    first_ids = [i for i, _ in session["cards"]]
    session, note = chat.feedback(0, "dislike", session)
    assert "don't like" in note and first_ids[0] in session["state"]["disliked"]
    session, note = chat.feedback(1, "like", session)
    assert first_ids[1] in session["state"]["liked"]
    assert [f["value"] for f in store.feedback(session["id"])] == ["dislike", "like"]
    history, session, cards = run(chat, "more please", history, session)
    assert first_ids[0] not in [i for i, _ in session["cards"]]


def test_feedback_before_any_picks_is_a_gentle_no_op(catalog):
    chat = ChatSession(make(catalog, FakeBackend()))
    session, note = chat.feedback(0, "like", new_session())
    assert "Nothing to rate" in note and session["state"] is None


def test_errors_become_chat_messages_not_exceptions(catalog):
    chat = ChatSession(make(catalog, FakeBackend()))
    history, session, cards = run(chat, "   ", [], new_session())
    assert history[-1]["content"].startswith("⚠️") and cards == []


def test_the_tail_slider_reaches_the_reranker_once_moved(catalog):
    chat = ChatSession(make(catalog, FakeBackend()))
    session = {**new_session(), "tail_moved": True}
    _, session, _ = run(chat, "sci-fi please", [], session, tail=1.0)
    assert session["state"]["tail_boost"] == 1.0


def test_cards_escape_catalog_text(catalog):
    from agent.domain.movielens.film import film
    from agent.types import Recommendation

    rec = Recommendation(film(1, "<script>x</script>", 1990, ("Drama",)), 1.0, "a & b", "template")
    assert "<script>" not in card_html(rec) and "&lt;script&gt;" in card_html(rec)


def test_picks_show_before_their_explanations_which_then_stream_in(catalog):
    backend = FakeBackend(replies=["It is sci-fi, like Alien, from the same year.",
                                   "A sci-fi pick, like Alien."])
    chat = ChatSession(make(catalog, backend, explain="llm"), min_update_s=0)
    steps = list(chat.respond("I loved Alien, sci-fi please", [], new_session(), 0.0, 0.0))
    picks = steps[1]
    assert len(picks[2]) == 2 and all("…writing why" in c for c in picks[2])
    growing = [s[2][0] for s in steps[2:-1]]
    assert any("It is sci-fi," in c and "same year" not in c for c in growing)  # part-way
    final = steps[-1]
    assert not any("…writing why" in c for c in final[2])
    assert "…writing why" not in final[0][-1]["content"]


def test_the_ui_refuses_a_public_address_without_a_key(catalog, tmp_path):
    import pytest

    from agent.errors import ConfigError
    from agent.interfaces.app import launch
    from agent.settings import Settings

    with pytest.raises(ConfigError, match="TAILOR_API_KEY"):
        launch(make(catalog, FakeBackend()), Settings(home=tmp_path), host="0.0.0.0")


def test_no_rateable_cards_before_the_first_picks(catalog):
    from agent.interfaces.app import build_app

    app = build_app(make(catalog, FakeBackend()), n_cards=3)
    groups = [b for b in app.blocks.values() if str(getattr(b, "elem_id", "")).startswith("pick-")]
    assert len(groups) == 3 and not any(g.visible for g in groups)


def test_only_real_picks_get_a_card_and_rating_buttons(catalog):
    from agent.interfaces.app import card_updates, hidden_cards

    _, _, cards = run(ChatSession(make(catalog, FakeBackend())), "I loved Alien", [], new_session())
    assert len(cards) == 2  # top_k=2 here, the page has 3 slots
    updates = card_updates(cards, 3)
    assert [u["value"] for u in updates[:3]] == [cards[0], cards[1], ""]
    assert [u["visible"] for u in updates[3:]] == [True, True, False]
    # the working note and errors carry no cards: what the page shows stays as it is
    assert all(set(u) == {"__type__"} for u in card_updates([], 3))
    # a new session hides them all again
    assert [u["visible"] for u in hidden_cards(3)[3:]] == [False] * 3
