"""LLM state extraction: the schema, checking the model's form, merging with the rules."""

import json

import pytest

from agent.errors import BackendError
from agent.understand.extract import (
    FIELDS, StateExtractor, combine, form_text, parse_extraction, state_backend, state_schema)
from agent.domain.movielens.reference import ReferenceFilm, ReferenceFilms
from agent.llm.fake import FakeBackend
from agent.understand.linking import TitleIndex
from agent.understand.parse import ParsedMessage, parse_message
from agent.understand.people import PeopleIndex
from tests.conftest import tiny_items
from tests.agent.turn.test_recommender import make


def form(**kw) -> str:
    base = {"liked_titles": [], "disliked_titles": [], "genres": [], "excluded_genres": [],
            "year_min": None, "year_max": None}
    return json.dumps({**base, **kw})


def test_the_schema_lists_every_field_optional_and_only_catalog_values():
    schema = state_schema(["Comedy", "Horror"], moods=["cozy"])
    assert list(schema["properties"]) == list(FIELDS) and not schema["additionalProperties"]
    assert "required" not in schema  # the model writes only what the message says
    assert schema["properties"]["genres"]["items"]["enum"] == ["Comedy", "Horror"]
    assert schema["properties"]["moods"]["items"]["enum"] == ["cozy"]


def test_the_model_may_only_pick_out_titles_the_user_wrote():
    index = TitleIndex(tiny_items())
    text = "i adored alien but heat bored me"
    p = parse_extraction(form(liked_titles=["Alien", "Aliens", "The Matrix"],
                              disliked_titles=["heat"]), text, index)
    assert p.liked == (1,) and p.disliked == (6,)  # Aliens and The Matrix: not in the message


def test_invalid_values_are_dropped_not_trusted():
    p = parse_extraction(form(genres=["Horror", "Sports", 3], excluded_genres=["Horror"],
                              year_min=1999, year_max=1990), "from 1990 to 1999", None)
    assert p.genres == () and p.excluded_genres == ("Horror",)  # excluded wins a conflict
    assert (p.year_min, p.year_max) == (None, None)  # an impossible range is no range
    assert parse_extraction('{"genres": ', "x", None) == ParsedMessage()
    assert parse_extraction("[1, 2]", "x", None) == ParsedMessage()


def test_the_rules_win_where_they_found_something():
    index = TitleIndex(tiny_items())
    text = "I loved Alien, from the 90s, something eerie"
    rules = parse_message(text, index)
    model = parse_extraction(form(disliked_titles=["Alien"], genres=["Horror"], year_min=1970,
                                  year_max=1979), text, index)
    merged = combine(rules, model)
    assert merged.liked == (1,) and merged.disliked == ()
    assert (merged.year_min, merged.year_max) == (1990, 1999)
    # Beside a title the rules found, a genre from the model is not trusted.
    assert merged.genres == ()
    text = "something eerie from the 90s"
    model = parse_extraction(form(genres=["Horror"], year_min=1970, year_max=1979), text, index)
    merged = combine(parse_message(text, index), model)
    assert merged.genres == ("Horror",)  # the mood word the rules did not know
    assert (merged.year_min, merged.year_max) == (1990, 1999)


def test_auto_asks_the_model_only_when_the_rules_leave_words_unexplained():
    backend = FakeBackend(replies=[form(genres=["Horror"])])
    extractor = StateExtractor(backend, TitleIndex(tiny_items()), "auto")
    index = TitleIndex(tiny_items())
    plain = parse_message("sci-fi from the 90s", index)
    assert extractor.refine("sci-fi from the 90s", plain) is plain and not backend.calls
    eerie = parse_message("something eerie", index)
    assert extractor.refine("something eerie", eerie).genres == ("Horror",)
    assert [c[0] for c in backend.calls] == ["generate_json"]
    with pytest.raises(ValueError, match="mode"):
        StateExtractor(backend, index, "sometimes")


def test_the_form_names_only_the_catalogs_own_genres():
    # A shop's categories are its genres; a film genre the model names is dropped, and
    # the schema the model must follow offers the shop's values alone.
    backend = FakeBackend(replies=[form(genres=["Horror", "Shoes"])])
    extractor = StateExtractor(backend, TitleIndex(tiny_items()), "always",
                               genres=("Shoes", "Bags"))
    assert extractor.schema["properties"]["genres"]["items"]["enum"] == ["Shoes", "Bags"]
    asked = ParsedMessage(query="rain")  # a word the rules could not place
    assert extractor.refine("something for the rain", asked).genres == ("Shoes",)
    bare = StateExtractor(backend, TitleIndex(tiny_items()), "always", genres=())
    assert "genres" not in bare.schema["properties"]


class Broken(FakeBackend):
    def generate_json(self, *a):
        raise BackendError("server gone")


def test_a_failing_model_leaves_the_rules_parse(catalog):
    rec = make(catalog, Broken())
    rec.extractor = StateExtractor(rec.backend, rec.title_index, "always")
    reply = rec.turn("I loved Alien, something eerie")
    assert reply.state.liked == (1,) and reply.recommendations


def test_the_extracted_state_reaches_the_turn_and_is_shown(catalog):
    rec = make(catalog, FakeBackend(replies=[form(genres=["Horror"])]))
    rec.extractor = StateExtractor(rec.backend, rec.title_index, "auto")
    reply = rec.turn("something eerie")
    assert reply.state.genres == ("Horror",)
    assert "horror" in reply.text.split("\n")[0].lower()
    assert all("Horror" in r.item.values("genres") for r in reply.recommendations)


def test_titles_may_be_misspelled_or_lower_case_as_the_user_wrote_them():
    index = TitleIndex(tiny_items())
    text = "i loved termnator 2: judgment day and the usual suspects"
    p = parse_extraction(form(liked_titles=["termnator 2: judgment day", "the usual suspects"]),
                         text, index)
    assert p.liked == (3, 4)
    # Not in the message (the model corrected the spelling itself): dropped.
    assert parse_extraction(form(liked_titles=["Terminator 2: Judgment Day"]), text, index).liked == ()
    # A short key is never matched fuzzily ("alin" is close to Alien, but too short to tell).
    assert parse_extraction(form(liked_titles=["alin"]), "alin please", index).liked == ()


def test_people_resolve_to_the_catalog_credits_only_when_named():
    people = PeopleIndex(tiny_items())
    text = "something with sigourney weavr, or by Cameron"
    p = parse_extraction(form(people=["sigourney weavr", "Cameron", "Tom Hanks", "Jane Doe"]),
                         text, None, people=people)
    assert p.people == ("Sigourney Weaver", "James Cameron")  # Hanks is not in the message
    assert parse_extraction(form(people=["Jane Doe"]), "films with Jane Doe", None,
                            people=people).people == ()  # named, but credited nowhere
    assert parse_extraction(form(people=["sigourney weaver"]), "sigourney weaver", None).people == ()


def test_moods_come_from_the_vocabulary_and_outside_titles_from_the_reference_table():
    matrix = ReferenceFilm("The Matrix", 1999, ("Action", "Sci-Fi"))
    reference = ReferenceFilms({"matrix": matrix})
    text = "something cozy, like the matrix or alien"
    p = parse_extraction(form(liked_titles=["the matrix", "alien"], moods=["cozy", "sleepy"]),
                         text, TitleIndex(tiny_items()), reference=reference)
    assert p.liked == (1,) and p.outside == (matrix,) and p.moods == ("cozy",)


def test_the_model_fills_only_the_kinds_the_rules_left_empty():
    matrix = ReferenceFilm("The Matrix", 1999, ("Action", "Sci-Fi"))
    model = ParsedMessage(people=("Robert De Niro",), moods=("cozy",), outside=(matrix,),
                          liked=(4,), genres=("Crime",))
    rules = ParsedMessage(not_found=("The Matrix",), query="matrix deniro")
    c = combine(rules, model)
    assert c.people == ("Robert De Niro",) and c.moods == ("cozy",) and c.genres == ("Crime",)
    assert c.outside == (matrix,) and c.liked == (4,) and c.not_found == ()  # found after all
    c = combine(ParsedMessage(people=("Al Pacino",), liked=(6,), query="deniro"), model)
    assert c.people == ("Al Pacino",) and c.liked == (6,) and c.outside == ()
    assert c.moods == () and c.genres == ()


def test_form_text_is_what_the_grammar_writes():
    text = form_text({"year_max": 1989, "liked_titles": ["Amélie"], "moods": [], "genres": None})
    assert text == '{"liked_titles": ["Amélie"], "year_max": 1989}'
    assert form_text({}) == "{}"


def test_a_state_adapter_is_checked_before_it_is_loaded(tmp_path):
    from agent.errors import AssetError
    from agent.settings import Settings

    settings = Settings(home=tmp_path)
    with pytest.raises(AssetError, match="finetune --task state"):
        state_backend(settings, "state-lora")
    folder = tmp_path / "adapters" / "ranker"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "tailor.json").write_text(json.dumps({"name": "ranker", "candidates": 10}))
    with pytest.raises(AssetError, match="not state extraction"):
        state_backend(settings, "ranker")


def test_the_model_adds_no_year_the_message_does_not_name():
    def years(text, **kw):
        p = parse_extraction(form(**kw), text, None)
        return p.year_min, p.year_max

    assert years("de los 90", year_min=1990, year_max=1999) == (1990, 1999)
    assert years("eigthies please", year_min=1980, year_max=1989) == (1980, 1989)
    assert years("I can't stand Robocop 3", year_min=1980, year_max=1989) == (None, None)
    assert years("older than 1975", year_max=1974) == (None, 1974)
    assert years("something old", year_max=1974) == (None, None)


def test_nothing_is_added_when_the_rules_explained_every_word():
    index = TitleIndex(tiny_items())
    rules = parse_message("sci-fi from the 90s", index)
    assert rules.query == ""
    model = parse_extraction(form(genres=["Horror"], moods=["cozy"]), "sci-fi from the 90s", index)
    assert combine(rules, model) == rules
