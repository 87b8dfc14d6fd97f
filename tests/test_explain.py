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


def test_names_abbreviations_and_duplicate_titles_are_not_false_alarms():
    from agent.types import Item

    items = {
        1: Item(1, "Michael", 1996, ("Comedy",), ("Nora Ephron",), ("John Travolta",)),
        2: Item(2, "The Rock", 1996, ("Action", "Thriller"), ("Michael Bay",), ("Sean Connery",)),
        3: Item(3, "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb", 1963,
                ("Sci-Fi", "War"), ("Stanley Kubrick",), ("Peter Sellers",)),
        4: Item(4, "Desperate Measures", 1998, ("Crime", "Drama", "Thriller"), (), ()),
        5: Item(5, "Desperate Measures", 1998, ("Crime", "Drama", "Thriller"), (), ()),
        6: Item(6, "Con Air", 1997, ("Action", "Thriller"), ("Simon West",), ("Nicolas Cage",)),
    }
    index = TitleIndex(list(items.values()))
    people = {"Michael Bay", "Nora Ephron", "Stanley Kubrick", "Simon West", "John Travolta"}
    state = DialogueState(liked=(3, 5, 6))
    f = gather_facts(items[2], state, items, None)
    text = template_explanation(f)
    assert "Desperate Measures" in text or "Con Air" in text
    # "Michael" (in "Michael Bay") is a title too; id 4 duplicates the liked id 5.
    said = ("Like Desperate Measures and Con Air it is action and thriller. "
            "Directed by Michael Bay (1996).")
    assert check_explanation(said, f, state, items, index, people) == []
    said = "Like Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb, it is fun."
    assert "more than two sentences" not in check_explanation(said, f, state, items, index, people)


def test_template_does_not_name_the_same_liked_title_twice(ctx):
    catalog, _, _, _ = ctx
    state = DialogueState(liked=(11,))
    f = facts_for(catalog, state, 3)  # Terminator 2 shares James Cameron and genres with Aliens
    text = template_explanation(f)
    assert text.count("Aliens") == 1, text
    assert text.startswith("James Cameron directed both this and Aliens; it is also")
