"""Gradio chat UI: a thin wrapper over ``Recommender.turn`` and the session store.

The page: a chat on the left; on the right the current picks as cards (title,
year, genres, director, why) with like / dislike buttons, and sliders for the
long tail and for variety. Before the first picks there are no cards, and there are
never more cards than picks: only real picks can be rated. The picks appear as soon as they are ranked and their
explanations stream in as the model writes them (``Recommender.turn_stream``).
Feedback is stored (SQLite) and changes the next turn.
"""

from __future__ import annotations

import html
import logging
import time
import uuid

from agent.errors import TailorError
from agent.interfaces.sessions import SessionStore, apply_feedback, open_store
from agent.types import DialogueState

log = logging.getLogger(__name__)
WORKING = "…finding catalog items that fit"


WRITING = "…writing why"


def card_html(rec, explanation: str | None = None) -> str:
    """One pick as a card; every string is escaped (titles come from data files).
    ``explanation`` overrides the pick's own (a draft while it streams)."""
    it = rec.item
    directors = ", ".join(it.values("director"))
    meta = " · ".join(filter(None, [", ".join(it.values("genres")),
                                    "dir. " + directors if directors else ""]))
    if not meta:  # an imported catalog's fact fields (its schema's): category, brand, price ...
        shown = (", ".join(map(str, v)) if isinstance(v, list) else str(v)
                 for v in rec.facts.values())
        meta = " · ".join(v for v in shown if len(v) <= 40)
    why = rec.explanation if explanation is None else explanation
    return (f"<div class='tailor-card' data-item='{it.id}'><b>{html.escape(it.label)}</b>"
            f"<br><small>{html.escape(meta)}</small><p>{html.escape(why or WRITING)}</p></div>")


def reply_markdown(reply, drafts: dict[int, str] | None = None) -> str:
    """The chat message for a reply: the state line, the picks, any notices.
    ``drafts`` holds explanations still being written (streaming)."""
    head, *_ = reply.text.split("\n", 1)
    if not reply.recommendations:
        lines = [reply.text]
    else:
        drafts = drafts or {}
        lines = [f"*{head}*"] + [f"**{k}. {r.item.label}** — "
                                 f"{drafts.get(k - 1, r.explanation) or WRITING}"
                                 for k, r in enumerate(reply.recommendations, 1)]
    return "\n\n".join(lines + [f"> {n}" for n in reply.notices])


class ChatSession:
    """The handlers the page wires up; plain functions of (inputs, state) for tests."""

    def __init__(self, recommender, store: SessionStore | None = None, min_update_s: float = 0.1):
        self.recommender, self.store = recommender, store
        self.min_update_s = min_update_s  # how often a streaming draft redraws the page

    def respond(self, message: str, history: list, session: dict, tail_boost: float,
                diversity: float):
        """Yields (history, session, cards): first the message with a working note, then
        the picks as soon as they are ranked, their explanations as they are written,
        and the finished answer. Never raises: errors become a message in the chat."""
        history = list(history or []) + [{"role": "user", "content": message}]
        yield history + [{"role": "assistant", "content": WORKING}], session, []
        state = DialogueState.from_dict(session["state"]) if session.get("state") else DialogueState()
        if session.get("tail_moved"):
            state = state.with_changes(tail_boost=float(tail_boost))
        drafts: dict[int, str] = {}
        shown_at = 0.0
        try:
            for event in self.recommender.turn_stream(message, state, diversity=float(diversity)):
                if event.kind == "draft":
                    drafts[event.index] = event.text
                    if time.monotonic() - shown_at < self.min_update_s:
                        continue
                elif event.kind == "final":
                    reply = event.reply
                    break
                shown_at = time.monotonic()
                recs = event.reply.recommendations
                yield (history + [{"role": "assistant",
                                   "content": reply_markdown(event.reply, drafts)}], session,
                       [card_html(r, drafts.get(k, "")) for k, r in enumerate(recs)])
        except TailorError as e:
            yield history + [{"role": "assistant", "content": f"⚠️ {e}"}], session, []
            return
        except Exception:  # UI edge: log it, show a notice, keep the session alive
            log.exception("turn failed")
            yield history + [{"role": "assistant", "content":
                              "⚠️ Something went wrong on our side; please try again."}], session, []
            return
        if self.store is not None:
            self.store.save_turn(session["id"], message, reply.to_json(), reply.state)
        session = {**session, "state": reply.to_json()["state"],
                   "cards": [(r.item.id, r.item.label) for r in reply.recommendations]}
        yield (history + [{"role": "assistant", "content": reply_markdown(reply)}], session,
               [card_html(r) for r in reply.recommendations])

    def feedback(self, k: int, value: str, session: dict) -> tuple[dict, str]:
        """Like or dislike card ``k``: stored, folded into the state for the next turn."""
        cards = session.get("cards") or []
        if k >= len(cards):
            return session, "Nothing to rate there yet."
        item_id, label = cards[k]
        if self.store is not None and session.get("state"):
            state = self.store.add_feedback(session["id"], item_id, value)
        else:
            base = DialogueState.from_dict(session["state"]) if session.get("state") else DialogueState()
            state = apply_feedback(base, item_id, value)
        session = {**session, "state": state.to_json()}
        verb = "like" if value == "like" else "don't like"
        return session, f"Noted: you {verb} {label}. Your next message will take it into account."


def card_updates(html_cards: list[str], n_cards: int) -> list:
    """Gradio updates for the card slots, then for their groups (card and rating buttons):
    one slot per pick, shown; the slots beyond the picks hidden, so only real picks can be
    rated. No cards (the working note, an error) leaves the page's cards as they are."""
    import gradio as gr

    if not html_cards:
        return [gr.update()] * (2 * n_cards)
    html_cards = html_cards[:n_cards]
    shown = [k < len(html_cards) for k in range(n_cards)]
    return ([gr.update(value=html_cards[k] if shown[k] else "") for k in range(n_cards)]
            + [gr.update(visible=v) for v in shown])


def hidden_cards(n_cards: int) -> list:
    """No picks yet (a new page, a new session): no cards, no rating buttons."""
    import gradio as gr

    return [gr.update(value="") for _ in range(n_cards)] + [gr.update(visible=False)] * n_cards


def new_session() -> dict:
    return {"id": uuid.uuid4().hex, "state": None, "cards": [], "tail_moved": False}


def build_app(recommender, store: SessionStore | None = None, model_name: str = "none",
              adapter: str | None = None, tail_boost: float = 0.0, diversity: float = 0.0,
              n_cards: int = 3):
    import gradio as gr

    chat_session = ChatSession(recommender, store)
    with gr.Blocks(title="Tailor") as app:
        gr.Markdown("## Tailor — movie recommendations from the MovieLens catalog\n"
                    "Name movies you liked, genres, moods or decades; rate the picks to steer "
                    f"the next ones. Model: `{model_name}` · adapter: `{adapter or 'none'}`",
                    elem_id="header")
        session = gr.State(new_session)
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(elem_id="chat", height=460, label="Chat")
                msg = gr.Textbox(placeholder="e.g. I loved Alien and Blade Runner, something "
                                 "from the 90s", show_label=False, elem_id="msg")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    reset = gr.Button("New session", elem_id="reset")
            with gr.Column(scale=2):
                tail = gr.Slider(0, 1, value=tail_boost, step=0.1, elem_id="tail",
                                 label="Familiar hits (0) … hidden gems (1)")
                variety = gr.Slider(0, 1, value=diversity, step=0.1, elem_id="variety",
                                    label="Variety between picks")
                cards, groups, likes, dislikes = [], [], [], []
                for k in range(n_cards):  # hidden until the first picks arrive
                    with gr.Group(visible=False, elem_id=f"pick-{k}") as group:
                        groups.append(group)
                        cards.append(gr.HTML("", elem_id=f"card-{k}"))
                        with gr.Row():
                            likes.append(gr.Button("Like", size="sm", elem_id=f"like-{k}"))
                            dislikes.append(gr.Button("Not for me", size="sm",
                                                      elem_id=f"dislike-{k}"))
                status = gr.Markdown("", elem_id="status")

        def on_submit(message, history, sess, t, d):
            for hist, sess2, html_cards in chat_session.respond(message, history, sess, t, d):
                yield (hist, sess2, "", *card_updates(html_cards, n_cards))

        outputs = [chat, session, msg, *cards, *groups]
        msg.submit(on_submit, [msg, chat, session, tail, variety], outputs)
        send.click(on_submit, [msg, chat, session, tail, variety], outputs)
        tail.change(lambda s: {**s, "tail_moved": True}, [session], [session])
        for k in range(n_cards):
            likes[k].click(lambda s, k=k: chat_session.feedback(k, "like", s), [session],
                           [session, status])
            dislikes[k].click(lambda s, k=k: chat_session.feedback(k, "dislike", s), [session],
                              [session, status])
        reset.click(lambda: ([], new_session(), "", "Started a new session.",
                             *hidden_cards(n_cards)),
                    None, [chat, session, msg, status, *cards, *groups])
    return app


def launch(recommender, settings, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page. Beyond 127.0.0.1 it asks for a login (any user name, the password
    ``TAILOR_API_KEY``) and refuses to start without a key, as ``tailor serve`` does."""
    from agent.errors import ConfigError
    from agent.settings import LOOPBACK

    auth = None
    if host not in LOOPBACK:
        if not settings.api_key:
            raise ConfigError(f"refusing to serve the UI on {host} without TAILOR_API_KEY: anyone "
                              "who can reach it could use it; set a key or bind 127.0.0.1")
        from agent.interfaces.admission import api_keys, matching_key

        keys = api_keys(settings.api_key)
        auth = lambda user, password: matching_key(password, keys) is not None  # noqa: E731
    app = build_app(recommender, open_store(settings),
                    getattr(recommender.backend, "name", "none"), settings.adapter,
                    settings.tail_boost, settings.diversity, settings.top_k)
    app.launch(server_name=host, server_port=port, show_error=False, auth=auth)
