"""LLM state extraction: the schema, checking the model's form, merging with the rules."""

import json

import pytest

from agent.errors import BackendError
from agent.extract import StateExtractor, combine, parse_extraction, state_schema
from agent.linking import TitleIndex
from agent.llm.fake import FakeBackend
from agent.state import ParsedMessage, parse_message
from tests.conftest import tiny_items
from tests.test_recommender import make


def form(**kw) -> str:
    base = {"liked_titles": [], "disliked_titles": [], "genres": [], "excluded_genres": [],
            "year_min": None, "year_max": None}
    return json.dumps({**base, **kw})


def test_the_schema_lists_every_field_and_only_catalog_genres():
    schema = state_schema(["Comedy", "Horror"])
    assert set(schema["required"]) == set(schema["properties"]) and not schema["additionalProperties"]
    assert schema["properties"]["genres"]["items"]["enum"] == ["Comedy", "Horror"]


def test_the_model_may_only_pick_out_titles_the_user_wrote():
    index = TitleIndex(tiny_items())
    text = "i adored alien but heat bored me"
    p = parse_extraction(form(liked_titles=["Alien", "Aliens", "The Matrix"],
                              disliked_titles=["heat"]), text, index)
    assert p.liked == (1,) and p.disliked == (6,)  # Aliens and The Matrix: not in the message


def test_invalid_values_are_dropped_not_trusted():
    p = parse_extraction(form(genres=["Horror", "Sports", 3], excluded_genres=["Horror"],
                              year_min=1999, year_max=1990), "x", None)
    assert p.genres == () and p.excluded_genres == ("Horror",)  # excluded wins a conflict
    assert (p.year_min, p.year_max) == (None, None)  # an impossible range is no range
    assert parse_extraction('{"genres": ', "x", None) == ParsedMessage()
    assert parse_extraction("[1, 2]", "x", None) == ParsedMessage()


def test_the_rules_win_where_they_found_something():
    index = TitleIndex(tiny_items())
    rules = parse_message("I loved Alien, from the 90s, something eerie", index)
    model = parse_extraction(form(disliked_titles=["Alien"], genres=["Horror"], year_min=1970,
                                  year_max=1979), "I loved Alien, from the 90s, something eerie",
                             index)
    merged = combine(rules, model)
    assert merged.liked == (1,) and merged.disliked == ()
    assert (merged.year_min, merged.year_max) == (1990, 1999)
    assert merged.genres == ("Horror",)  # the mood word the rules did not know


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
    assert all("Horror" in r.item.genres for r in reply.recommendations)
