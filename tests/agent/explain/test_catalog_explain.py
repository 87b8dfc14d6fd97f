"""Explanations on an imported catalog: written in its own words (no "watched", no
"films"), checked against its own facts when the LLM writes them: a facet value that is
not the pick's, or a number the facts do not give, sends the draft back to the template."""

from __future__ import annotations

import re

import pytest

from agent.data.catalog import Catalog
from agent.explain.check import check_explanation
from agent.explain.facts import gather_facts
from agent.explain.writer import explain_picks, explanation_messages
from agent.llm.fake import FakeBackend
from agent.rank.verbalizer import VerbalizerRanker
from agent.recommender import Recommender
from agent.types import DialogueState
from agent.understand.linking import TitleIndex
from tests.agent.data.test_import import imported_shop

FILM_WORDS = re.compile(r"\b(film|films|movie|movies|watch\w*|viewers?)\b", re.I)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return Catalog.load(imported_shop(tmp_path_factory.mktemp("catalog-explain"), n_products=80, users=150, interactions=1500))


def _liked_and_picks(catalog):
    """A liked product and the three products most often chosen with it."""
    liked = max(catalog.items.values(), key=lambda i: i.popularity)
    row = catalog.cowatch[liked.id].toarray().ravel()
    picks = [int(i) for i in row.argsort()[::-1] if i != liked.id and i in catalog.items][:3]
    return liked, [catalog.items[i] for i in picks]


def _facts(catalog, state, picks):
    return [gather_facts(p, state, catalog.items, catalog.cowatch, catalog.schema)
            for p in picks]


def test_co_choice_is_said_in_the_catalogs_own_words(catalog):
    liked, picks = _liked_and_picks(catalog)
    facts = _facts(catalog, DialogueState(liked=(liked.id,)), picks)
    assert all(f.noun == "item" for f in facts) and facts[0].cowatched_with
    lines = " ".join(line for f in facts for line in f.lines())
    assert "often chose it too" in lines and not FILM_WORDS.search(lines)
    texts = explain_picks(facts)
    assert any("chosen" in t or "chose" in t for t in texts), texts
    for text in texts:
        assert not FILM_WORDS.search(text), text
    state = DialogueState(liked=(liked.id,))
    for f, text in zip(facts, texts):  # the writer's own texts pass the check
        assert not check_explanation(text, f, state, catalog.items,
                                     TitleIndex(list(catalog.items.values())), set(),
                                     values=catalog.facet_values), text


def test_the_llm_prompt_names_the_catalogs_noun_and_facts(catalog):
    _, picks = _liked_and_picks(catalog)
    f = _facts(catalog, DialogueState(facets=(("colour", picks[0].attrs["colour"]),)), picks)[0]
    system, user = explanation_messages(f)
    assert "why a item suits them" in system["content"] and "movie" not in system["content"]
    assert user["content"].startswith(f"Item: {picks[0].title}\nFacts:\n- ")
    assert f"Its colour is {picks[0].attrs['colour']}, as the user asked." in user["content"]


@pytest.mark.parametrize("draft,problem", [
    ("It is {other_colour}, a colour you will love.", "says colour"),
    ("At just 3.99 it is a bargain.", "states a number"),
    ("It is {colour} and costs {price}.", None),
    ("You could buy it as a gift for a friend.", "says things the facts do not"),
    ("The user chose it as their item.", "speaks of the user"),
])
def test_the_check_catches_a_value_or_number_that_is_not_the_picks(catalog, draft, problem):
    _, picks = _liked_and_picks(catalog)
    pick = picks[0]
    other = next(c for c in catalog.facet_values["colour"] if c != pick.attrs["colour"])
    f = _facts(catalog, DialogueState(), [pick])[0]
    text = draft.format(other_colour=other, colour=pick.attrs["colour"],
                        price=f"{pick.attrs['price']:g}")
    problems = check_explanation(text, f, DialogueState(), catalog.items,
                                 TitleIndex(list(catalog.items.values())), set(),
                                 values=catalog.facet_values)
    if problem is None:
        assert not problems, problems
    else:
        assert any(problem in p for p in problems), problems


def test_a_rejected_llm_draft_falls_back_to_the_template(catalog):
    _, picks = _liked_and_picks(catalog)
    backend = FakeBackend(replies=["It is made of unobtainium and costs 1.5 pounds."] * 3)
    rec = Recommender(catalog, TitleIndex(list(catalog.items.values())), None,
                      VerbalizerRanker(backend, catalog, n_llm=0), backend, explain="llm")
    facts = _facts(catalog, DialogueState(), picks)
    texts, sources = rec.explain(facts, DialogueState(), [])
    assert sources == ["template"] * 3 and texts == explain_picks(facts)
