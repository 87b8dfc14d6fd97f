"""Tailor for LangChain: a typed tool an agent can call, and a Runnable.

The tool's schema comes from the function's signature and Google-style
docstring (``@tool(parse_docstring=True)``); what it returns is the reply's
structured form, so the calling agent sees exact catalog items, never a
paraphrase it could distort.
"""

from __future__ import annotations

from agent.errors import InputError


def make_tailor_tool(recommender, store=None):
    """A LangChain tool over ``recommender``. With a ``SessionStore``, a ``session_id``
    continues a stored conversation (created on first use)."""
    from langchain_core.tools import ToolException, tool

    @tool("recommend_movies", parse_docstring=True)
    def recommend_movies(request: str, session_id: str | None = None) -> dict:
        """Recommend movies from the catalog for what the customer said.

        Use it for any question about what to watch. Pass the customer's words as they
        are: titles they liked or disliked, genres, moods, decades.

        Args:
            request: the customer's message, e.g. "something like Alien but from the 90s".
            session_id: an id for this customer's conversation, to remember earlier
                preferences; leave empty for a one-off question.
        """
        try:
            state = None
            if session_id and store is not None:
                store.create(session_id)
                state = store.load(session_id)
            reply = recommender.turn(request, state)
            if session_id and store is not None:
                store.save_turn(session_id, request, reply.to_json(), reply.state)
        except InputError as e:  # the calling model can rephrase and retry
            raise ToolException(str(e)) from None
        out = reply.to_json()
        out.pop("timings_s", None)
        return out

    recommend_movies.handle_tool_error = True  # a ToolException goes back to the model as text
    return recommend_movies


def make_tailor_runnable(recommender):
    """``{"message": str, "state": dict | None} -> reply dict`` as a LangChain Runnable,
    so Tailor composes in chains (``prompt | llm | parser | tailor``) and gets
    ``invoke``/``batch``/``stream`` for free."""
    from langchain_core.runnables import RunnableLambda

    from agent.types import DialogueState

    def run(inputs: dict) -> dict:
        state = inputs.get("state")
        reply = recommender.turn(inputs["message"],
                                 DialogueState.from_dict(state) if state else None)
        return reply.to_json()

    return RunnableLambda(run, name="tailor")
