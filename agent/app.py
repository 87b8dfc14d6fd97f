"""Gradio chat UI: a thin wrapper over ``Recommender.turn``."""

from __future__ import annotations

import logging

from agent.errors import TailorError

log = logging.getLogger(__name__)


def format_reply(reply) -> str:
    """Markdown for one reply: the state line, then a card per item."""
    lines = []
    head, *_ = reply.text.split("\n", 1)
    lines.append(f"*{head}*")
    for k, r in enumerate(reply.recommendations, 1):
        it = r.item
        meta = ", ".join(it.genres)
        if it.director:
            meta += f" · dir. {', '.join(it.director)}"
        lines.append(f"**{k}. {it.label}** — {meta}  \n{r.explanation}")
    if not reply.recommendations:
        lines = [reply.text]
    lines += [f"> {n}" for n in reply.notices]
    return "\n\n".join(lines)


def make_respond(recommender):
    """The ``(message, history, state) -> (answer, state)`` handler; never raises."""

    def respond(message, history, state):
        try:
            reply = recommender.turn(message, state)
        except TailorError as e:
            return f"⚠️ {e}", state
        except Exception:  # UI edge: log it, show a notice, keep the session alive
            log.exception("turn failed")
            return "⚠️ Something went wrong on our side; please try again.", state
        return format_reply(reply), reply.state

    return respond


def build_app(recommender):
    import gradio as gr

    respond = make_respond(recommender)
    with gr.Blocks(title="Tailor") as app:
        gr.Markdown("## Tailor — movie recommendations from the MovieLens catalog\n"
                    "Name movies you liked, genres, moods or decades. "
                    f"Model: `{getattr(recommender.backend, 'name', 'none')}`")
        state = gr.State(None)
        gr.ChatInterface(respond, additional_inputs=[state], additional_outputs=[state],
                         examples=[["I loved Alien and Blade Runner, something from the 90s", None],
                                   ["something like Toy Story for the family", None],
                                   ["a funny romance before 1980, no horror", None]])
    return app


def launch(recommender, host: str = "127.0.0.1", port: int = 7860) -> None:
    build_app(recommender).launch(server_name=host, server_port=port, show_error=False)
