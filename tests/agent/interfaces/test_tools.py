import importlib.util
import re
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, ToolMessage

from agent.interfaces.sessions import SessionStore
from agent.interfaces.tools import make_tailor_runnable, make_tailor_tool
from agent.llm.fake import FakeBackend
from tests.agent.turn.test_recommender import make


def test_the_tool_schema_comes_from_the_signature_and_docstring(catalog):
    tool = make_tailor_tool(make(catalog, FakeBackend()))
    assert tool.name == "recommend_movies"
    props = tool.args_schema.model_json_schema()["properties"]
    assert set(props) == {"request", "session_id"}
    assert "customer's message" in props["request"]["description"]
    assert tool.args_schema.model_json_schema()["required"] == ["request"]


def test_the_tool_returns_catalog_items_and_remembers_a_session(catalog, tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    tool = make_tailor_tool(make(catalog, FakeBackend()), store)
    out = tool.invoke({"request": "I loved Alien", "session_id": "c1"})
    assert out["items"] and all(it["id"] in catalog for it in out["items"])
    again = tool.invoke({"request": "from the 90s", "session_id": "c1"})
    assert again["state"]["liked"] == [1] and again["state"]["year_min"] == 1990


def test_bad_input_becomes_a_tool_error_the_model_can_read(catalog):
    tool = make_tailor_tool(make(catalog, FakeBackend()))
    out = tool.invoke({"request": "   "})
    assert "empty" in out  # handle_tool_error: returned as text, not raised


def test_the_runnable_batches_and_threads_state(catalog):
    runnable = make_tailor_runnable(make(catalog, FakeBackend()))
    a, b = runnable.batch([{"message": "I loved Alien"}, {"message": "a comedy"}])
    assert a["state"]["liked"] == [1] and "Comedy" in b["state"]["genres"]
    c = runnable.invoke({"message": "from the 90s", "state": a["state"]})
    assert c["state"]["liked"] == [1] and c["state"]["year_min"] == 1990


class ScriptedModel(FakeMessagesListChatModel):
    """A fake chat model with tool binding (the real one would decide by itself)."""

    def bind_tools(self, tools, **kw):
        return self


def load_example():
    path = Path(__file__).parents[3] / "examples" / "customer_service_bot.py"
    spec = importlib.util.spec_from_file_location("customer_service_bot", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bot_example_routes_recommendations_to_tailor_and_answers_the_rest(catalog):
    bot = load_example()
    tool = make_tailor_tool(make(catalog, FakeBackend()))
    seen = []

    class Recording(ScriptedModel):
        def invoke(self, messages, *a, **kw):
            seen.append(list(messages))
            return super().invoke(messages, *a, **kw)

    model = Recording(responses=[
        AIMessage("", tool_calls=[{"name": "recommend_movies", "id": "call1",
                                   "args": {"request": "something like Alien"}}]),
        AIMessage("Try Aliens or Alien 3."),
        AIMessage("We open at 9."),
    ])
    assert bot.answer(model, tool, "anything like Alien?") == "Try Aliens or Alien 3."
    tool_msg = [m for m in seen[1] if isinstance(m, ToolMessage)][0]
    assert "'title'" in tool_msg.content and "Alien" in tool_msg.content
    assert bot.answer(model, tool, "when do you open?") == "We open at 9."


def test_schema_routing_sends_what_to_watch_to_tailor_and_the_rest_to_the_model(catalog):
    bot = load_example()
    tool = make_tailor_tool(make(catalog, FakeBackend()))
    seen = []

    class Recording(ScriptedModel):
        def invoke(self, messages, *a, **kw):
            seen.append(kw)
            return super().invoke(messages, *a, **kw)

    model = Recording(responses=[AIMessage('{"route": "recommend"}'),
                                 AIMessage('{"route": "other"}'), AIMessage("We open at 9."),
                                 AIMessage("no json")])
    text = bot.answer(model, tool, "anything like Alien?", routing="schema")
    titles = [re.match(r"\d+\. (.+?) \(\d{4}\) — ", line).group(1)
              for line in text.splitlines()[1:]]
    assert titles and all(any(it.title == t for it in catalog.items.values()) for t in titles)
    assert bot.answer(model, tool, "when do you open?", routing="schema") == "We open at 9."
    assert bot.route(model, "?") == "other"  # a reply that is not the schema's JSON
