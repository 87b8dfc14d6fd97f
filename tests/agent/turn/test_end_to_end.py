"""End-to-end on the real assets: MovieLens-100K, SmolLM2-135M-Instruct, MiniLM, Chroma."""

import json
import os
import subprocess
import sys

import pytest

from agent.explain.check import check_explanation
from agent.explain.facts import gather_facts
from agent.explain.writer import explain_picks

pytestmark = pytest.mark.assets
ISSUE_QUERY = "I loved Alien and Blade Runner, something from the 90s"


@pytest.fixture(scope="module")
def recommender(real_settings):
    from agent.build import build_recommender

    return build_recommender(real_settings, log=lambda m: None)


def assert_faithful(rec, reply):
    for r in reply.recommendations:
        assert rec.catalog.get(r.item.id) == r.item  # a catalog item, with catalog facts
        facts = gather_facts(r.item, reply.state, rec.catalog.items, rec.catalog.cowatch)
        problems = check_explanation(r.explanation, facts, reply.state, rec.catalog.items,
                                     rec.title_index, rec.known_people)
        assert problems == [], (r.item.label, r.explanation, problems)


def test_assets_are_verified(real_settings):
    from agent.data.assets import verify_manifest

    assert verify_manifest(real_settings.models_dir / "smollm2-135m-instruct")
    assert verify_manifest(real_settings.models_dir / "all-minilm-l6-v2")


def test_cli_ask_json_answers_the_issue_example(real_settings):
    env = dict(os.environ, TAILOR_HOME=str(real_settings.home))
    out = subprocess.run([sys.executable, "-m", "agent", "ask", ISSUE_QUERY, "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    reply = json.loads(out.stdout)
    items = reply["items"]
    assert len(items) == 3
    titles = {it["title"] for it in items}
    assert not titles & {"Alien", "Blade Runner"}
    for it in items:
        assert set(it) >= {"id", "title", "year", "genres", "score", "explanation"}
        assert 1990 <= it["year"] <= 1999 and it["explanation"]
    assert reply["state"]["year_min"] == 1990 and len(reply["state"]["liked"]) == 2


def test_turn_is_faithful_and_in_catalog(recommender):
    reply = recommender.turn(ISSUE_QUERY)
    liked = {recommender.catalog.get(i).title for i in reply.state.liked}
    assert liked == {"Alien", "Blade Runner"}
    assert len(reply.recommendations) == 3
    assert all(1990 <= r.item.value("year") <= 1999 for r in reply.recommendations)
    assert all(r.llm_score is not None for r in reply.recommendations)  # the LLM ranked them
    assert_faithful(recommender, reply)


class Writes:
    """The real backend, except that every explanation it writes is ``draft``."""

    def __init__(self, real, draft: str):
        self.real, self.draft, self.asked = real, draft, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, conversations, max_new_tokens):
        self.asked += len(conversations)
        return [self.draft] * len(conversations)


def llm_explained_turn(recommender, message, backend=None):
    real = recommender.backend
    recommender.explain_mode, recommender.backend = "llm", backend or real
    try:
        return recommender.turn(message)
    finally:
        recommender.explain_mode, recommender.backend = "template", real


FUNNY = "a funny romantic movie before 1980, no horror"


def test_llm_written_explanations_are_checked_or_replaced(recommender):
    reply = llm_explained_turn(recommender, FUNNY)  # the real model writes them
    assert all(r.item.value("year") < 1980 and "Horror" not in r.item.values("genres") for r in reply.recommendations)
    assert_faithful(recommender, reply)
    facts = [gather_facts(r.item, reply.state, recommender.catalog.items,
                          recommender.catalog.cowatch) for r in reply.recommendations]
    templates = explain_picks(facts)  # the reply's picks are written together
    for r, template in zip(reply.recommendations, templates):
        # a kept draft is the model's text, not the template
        assert (r.explanation == template) == (r.explanation_source == "template")


def test_a_checkable_explanation_is_kept_and_a_false_claim_replaced(recommender):
    honest = Writes(recommender.backend, "It is worth a look.")
    reply = llm_explained_turn(recommender, FUNNY, honest)
    assert honest.asked == 3
    assert [r.explanation_source for r in reply.recommendations] == ["llm"] * 3
    assert all(r.explanation == "It is worth a look." for r in reply.recommendations)
    liar = Writes(recommender.backend, "It is a 2031 horror film by Steven Spielberg, "
                                       "a sequel to The Matrix.")
    reply = llm_explained_turn(recommender, FUNNY, liar)
    assert liar.asked == 3
    assert [r.explanation_source for r in reply.recommendations] == ["template"] * 3
    assert "Matrix" not in reply.text and "2031" not in reply.text
    assert_faithful(recommender, reply)


def test_streamed_turn_with_llm_explanations_ends_as_a_faithful_reply(recommender):
    recommender.explain_mode = "llm"
    try:
        events = list(recommender.turn_stream("something like Toy Story, funny"))
    finally:
        recommender.explain_mode = "template"
    assert events[0].kind == "picks" and events[-1].kind == "final"
    final = events[-1].reply
    assert [r.item.id for r in events[0].reply.recommendations] == \
        [r.item.id for r in final.recommendations]
    assert {e.index for e in events if e.kind == "draft"} == {0, 1, 2}
    assert_faithful(recommender, final)


def test_the_real_model_answers_under_a_json_schema(recommender):
    from agent.understand.extract import extraction_messages, state_schema

    full = state_schema()["properties"]
    schema = {"type": "object", "properties": {k: full[k] for k in ("genres", "year_min")},
              "required": ["genres", "year_min"], "additionalProperties": False}
    raw = recommender.backend.generate_json(extraction_messages("something spooky"), schema, 40)
    form = json.loads(raw)  # the grammar makes it parse, whatever the model thinks
    assert set(form) == {"genres", "year_min"}
    assert set(form["genres"]) <= set(full["genres"]["items"]["enum"])


def test_session_continues_across_invocations(real_settings, tmp_path):
    env = dict(os.environ, TAILOR_HOME=str(real_settings.home))
    sid = f"e2e-{os.getpid()}"
    shown = []
    for message in ("something like Toy Story", "more please, but from before 1995"):
        out = subprocess.run([sys.executable, "-m", "agent", "ask", message, "--session", sid,
                              "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        reply = json.loads(out.stdout)
        ids = [it["id"] for it in reply["items"]]
        assert ids and not set(ids) & set(shown)
        shown += ids
    assert reply["state"]["year_max"] == 1994 and len(reply["state"]["liked"]) == 1
