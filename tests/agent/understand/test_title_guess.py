"""Titles neither the catalog nor the reference table knows, described by the LLM
(agent.understand.title_guess): a guess is said as one, feeds only the genres wish, and never
becomes a pick."""

import pytest

from agent.domain.movielens.facts import title_key
from agent.domain.movielens.reference import ReferenceFilm, ReferenceFilms
from agent.errors import BackendError
from agent.llm.fake import FakeBackend
from agent.recommender import CLARIFY
from agent.understand.title_guess import TitleGuesser, guess_schema
from tests.agent.understand.test_understanding import make

GENRES = {"Action", "Horror", "Sci-Fi", "Comedy", "Drama"}


def test_the_schema_allows_only_catalog_genres():
    schema = guess_schema(GENRES)
    assert schema["properties"]["genres"]["items"]["enum"] == sorted(GENRES)
    assert schema["additionalProperties"] is False


def test_a_title_is_asked_once_and_off_list_genres_are_dropped():
    backend = FakeBackend(replies=['{"genres": ["Horror", "Slasher", "Horror"], "year": 2019}'])
    guesser = TitleGuesser(backend, GENRES)
    film = guesser.guess("Zorblax Returns")
    assert film == ReferenceFilm("Zorblax Returns", 2019, ("Horror",), guessed=True)
    assert film.label == "Zorblax Returns"  # a guessed year is not shown as known
    assert guesser.guess("zorblax returns ") is film  # cached: no second generation
    assert [c[0] for c in backend.calls].count("generate_json") == 1


class Down(FakeBackend):
    def generate_json(self, messages, schema, max_new_tokens):
        raise BackendError("connection refused")


def test_a_failing_backend_leaves_the_title_not_found(catalog):
    r = make(catalog, guesser=TitleGuesser(Down(), GENRES)).turn("I loved Zorblax Returns")
    assert '"Zorblax Returns"' in r.text and CLARIFY in r.text and r.recommendations == ()


class Broken(FakeBackend):
    def generate_json(self, messages, schema, max_new_tokens):
        raise TypeError("a bug in our own code")


def test_a_bug_is_not_hidden_as_a_failing_backend(catalog):
    with pytest.raises(TypeError):
        make(catalog, guesser=TitleGuesser(Broken(), GENRES)).turn("I loved Zorblax Returns")


def test_a_guess_is_said_as_a_guess_and_used_as_a_genre_wish(catalog):
    reference = ReferenceFilms({title_key("The Matrix"): ReferenceFilm("The Matrix", 1999,
                                                                       ("Action", "Sci-Fi"))})
    guesser = TitleGuesser(FakeBackend(replies=['{"genres": ["Horror"], "year": 2019}']), GENRES)
    r = make(catalog, guesser=guesser, reference=reference).turn("something like Zorblax Returns")
    assert "language model guesses it is Horror" in r.text and "may be wrong" in r.text
    assert r.state.outside == ("Zorblax Returns",) and r.state.like_genres == ("Horror",)
    assert r.recommendations and all("Horror" in x.item.values("genres") for x in r.recommendations)
    assert reference.by_label("Zorblax Returns").guessed  # later turns' retrieval finds it


def test_the_reference_table_is_asked_before_the_model(catalog):
    backend = FakeBackend(replies=['{"genres": ["Comedy"]}'])
    r = make(catalog, guesser=TitleGuesser(backend, GENRES)).turn("something like The Matrix")
    assert "The Matrix (1999) is not in the catalog" in r.text and "guesses" not in r.text
    assert not any(c[0] == "generate_json" for c in backend.calls)


def test_a_model_that_does_not_know_the_film_leaves_it_not_found(catalog):
    guesser = TitleGuesser(FakeBackend(replies=["{}"]), GENRES)
    r = make(catalog, guesser=guesser).turn("I loved Zorblax Returns")
    assert '"Zorblax Returns"' in r.text and CLARIFY in r.text and r.recommendations == ()
