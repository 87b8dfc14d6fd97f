"""A customer-service bot that hands recommendation questions to Tailor.

The bot's own chat model answers everything else (opening hours, orders...);
when the customer asks what to watch, the model calls the ``recommend_movies``
tool and phrases its answer from the catalog items the tool returns.

Run it against any LangChain chat model that supports tool calling, e.g. an
OpenAI-compatible server:

    python examples/customer_service_bot.py "anything like Toy Story for my kids?"

(with ``langchain-openai`` installed and ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``
set; the tests drive it with a scripted fake model).
"""

from __future__ import annotations

import sys

SYSTEM = ("You are the assistant of a video-rental shop. For any question about what to "
          "watch, call recommend_movies with the customer's words and answer only with the "
          "titles it returns. Answer other questions yourself, briefly.")


def answer(model, tool, question: str, session_id: str | None = None) -> str:
    """One customer question: the model may call the tool once, then answers."""
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage

    bound = model.bind_tools([tool])
    messages = [SystemMessage(SYSTEM), HumanMessage(question)]
    first = bound.invoke(messages)
    if not first.tool_calls:
        return first.content
    messages.append(first)
    for call in first.tool_calls:
        args = dict(call["args"])
        if session_id:
            args.setdefault("session_id", session_id)
        messages.append(ToolMessage(str(tool.invoke(args)), tool_call_id=call["id"]))
    return bound.invoke(messages).content


def main(argv: list[str]) -> int:
    from langchain_openai import ChatOpenAI  # pip install langchain-openai

    from agent.build import build_recommender
    from agent.settings import Settings
    from agent.tools import make_tailor_tool

    settings = Settings.from_env()
    tool = make_tailor_tool(build_recommender(settings))
    print(answer(ChatOpenAI(model="gpt-4o-mini", temperature=0), tool, " ".join(argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
