import pytest

from agent.explain import check_explanation, gather_facts, template_explanation
from agent.linking import TitleIndex
from agent.types import DialogueState
from tests.conftest import tiny_items


@pytest.fixture
def ctx(catalog):
    state = DialogueState(liked=(1,), year_min=1990, year_max=1999)
    people = {p for it in catalog.items.values() for p in (*it.director, *it.cast)}
    return catalog, state, TitleIndex(tiny_items()), people


def facts_for(catalog, state, item_id):
    return gather_facts(catalog.get(item_id), state, catalog.items, catalog.cowatch)


def test_facts_connect_item_to_liked(ctx):
    catalog, state, _, _ = ctx
    f = facts_for(catalog, state, 7)  # Alien 3 vs liked Alien
    assert f.shared_genres == ("Action", "Horror", "Sci-Fi")
    assert ("Sigourney Weaver", "cast", catalog.get(1)) in f.shared_people
    assert f.meets_years == (1990, 1999)


def test_template_explanations_pass_the_checker_for_every_item(ctx):
    catalog, state, index, people = ctx
    for item_id in catalog.items:
        if item_id in state.liked:
            continue
        f = facts_for(catalog, state, item_id)
        text = template_explanation(f)
        assert check_explanation(text, f, state, catalog.items, index, people) == [], text


def test_template_states_the_shared_person(ctx):
    catalog, state, _, _ = ctx
    text = template_explanation(facts_for(catalog, state, 7))
    assert text.startswith("Sigourney Weaver is in both this and Alien")
    assert "1992" in text


def test_checker_accepts_a_faithful_sentence(ctx):
    catalog, state, index, people = ctx
    f = facts_for(catalog, state, 7)
    ok = "Like Alien, it is sci-fi and horror, and Sigourney Weaver stars again."
    assert check_explanation(ok, f, state, catalog.items, index, people) == []


@pytest.mark.parametrize("text,problem", [
    ("It is a sequel to Aliens, which you will love.", "names another title"),
    ("Directed by James Cameron, it is sci-fi.", "person not credited"),
    ("Released in 1986, it is sci-fi.", "year"),
    ("A great comedy like Alien.", "Comedy"),
    ("It is sci-fi", "unfinished"),
    ('You will love "The Matrix Reloaded".', "quotes"),
    ("Movie: Alien 3 (1992) Facts: sci-fi.", "echoes"),
    ("It explores profound themes of identity, memory, grief and redemption.", "facts do not"),
])
def test_checker_rejects_untrue_or_ungrounded_text(ctx, text, problem):
    catalog, state, index, people = ctx
    f = facts_for(catalog, state, 7)
    problems = check_explanation(text, f, state, catalog.items, index, people)
    assert any(problem in p for p in problems), problems
