import pytest

from agent.domain.movielens.loaders import ML_GENRES
from agent.types import DialogueState
from agent.understand.linking import TitleIndex
from agent.understand.parse import content_words, genre_words, parse_message
from agent.understand.state import chroma_where, describe, merge, satisfies
from tests.conftest import tiny_items


@pytest.fixture
def index():
    return TitleIndex(tiny_items())


def parse(text, index, state=None):
    return merge(state or DialogueState(), parse_message(text, index))


def test_genre_lexicon_covers_exactly_the_movielens_genres():
    assert set(genre_words()) == set(ML_GENRES)


def test_the_issue_example(index):
    s = parse("I loved Alien and Blade Runner, something from the 90s", index)
    assert s.liked == (1, 2) and (s.year_min, s.year_max) == (1990, 1999)
    assert s.genres == () and s.disliked == ()


def test_less_gory_excludes_horror_and_like_links_title(index):
    s = parse("something like Alien but less gory, from the 90s", index)
    assert s.liked == (1,) and s.excluded_genres == ("Horror",)


def test_negated_titles_are_dislikes(index):
    s = parse("I liked Heat, not Aliens", index)
    assert s.liked == (6,) and s.disliked == (11,)
    s = parse("i loved alien and the usual suspects but hated toy story", index)
    assert s.liked == (1, 4) and s.disliked == (5,)


def test_exact_title_beats_fuzzy_and_typos_are_linked(index):
    assert parse("Aliens was great", index).liked == (11,)
    assert parse("something like Blade Runer", index).liked == (2,)


def test_titles_are_not_read_as_years(index):
    s = parse("2001: A Space Odyssey, between 1970 and 1985", index)
    assert s.liked == (9,) and (s.year_min, s.year_max) == (1970, 1985)


@pytest.mark.parametrize("text,bounds", [
    ("from the eighties", (1980, 1989)), ("1990s please", (1990, 1999)),
    ("'70s", (1970, 1979)), ("before 1980", (None, 1979)), ("after 1990", (1991, None)),
    ("since 1990", (1990, None)), ("in 1994", (1994, 1994)), ("1985-1995", (1985, 1995)),
])
def test_year_bounds(index, text, bounds):
    s = parse(text, index)
    assert (s.year_min, s.year_max) == bounds


def test_common_words_are_not_titles(index):
    # "Heat" the film exists, but "heat" in a sentence is a word.
    assert parse("nothing with too much heat", index).liked == ()
    assert parse("Heat and Alien were great", index).liked == (6, 1)


def test_genres_and_negations(index):
    s = parse("a funny romantic movie, no horror and nothing scary", index)
    assert set(s.genres) == {"Comedy", "Romance"} and s.excluded_genres == ("Horror",)


def test_merge_accumulates_and_latest_statement_wins(index):
    s1 = parse("I loved Alien, something from the 90s", index)
    s2 = parse("actually I did not like Alien. Comedy from the 80s", index, s1)
    assert s2.liked == () and s2.disliked == (1,)
    assert s2.genres == ("Comedy",) and (s2.year_min, s2.year_max) == (1980, 1989)


def test_content_words_drop_filler():
    assert content_words("Can you recommend a mind-bending, twisty movie from the 90s?") == "mind-bending twisty"
    assert content_words("a heist movie") == ""  # genre words become filters, not query text


def test_where_filter_and_python_predicate_agree(catalog):
    state = DialogueState(liked=(1,), genres=("Sci-Fi",), excluded_genres=("Horror",),
                          year_min=1990, year_max=1999)
    where = chroma_where(state)
    assert {"item_id": {"$nin": [1]}} in where["$and"]
    assert {"g_horror": False} in where["$and"] and {"g_sci_fi": True} in where["$and"]
    fits = sorted(i for i, it in catalog.items.items() if satisfies(it, state))
    assert fits == [3, 8]  # Alien 3 and Species are horror; Toy Story is not sci-fi


def test_describe_in_plain_words(catalog):
    state = DialogueState(liked=(1,), genres=("Sci-Fi",), excluded_genres=("Horror",),
                          year_min=1990, year_max=1999, disliked=(5,))
    assert describe(state, catalog.items) == (
        "Looking for: Sci-Fi, released 1990-1999, like Alien; not Horror, Toy Story")


def test_state_round_trips_through_json_and_rejects_unknown_fields():
    s = DialogueState(liked=(1, 2), year_min=1990)
    assert DialogueState.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown state fields"):
        DialogueState.from_dict({"likes": [1]})
