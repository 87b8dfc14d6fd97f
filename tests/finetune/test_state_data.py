"""Synthetic request -> state pairs: seeded, valid under the schema, read back as meant."""

import json
import re
from pathlib import Path

import jsonschema
import pytest

from agent.understand.extract import (
    FIELDS, extraction_messages, form_text, parse_extraction, state_schema)
from agent.domain.movielens.reference import ReferenceFilm, ReferenceFilms
from agent.understand.vocabulary import load_vocabulary
from finetune import state_data as S
from finetune import state_sources
from tests.conftest import tiny_items

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def sources():
    matrix = ReferenceFilm("The Matrix", 1999, ("Action", "Sci-Fi"))
    return state_sources.catalog_sources(tiny_items(), outside=["The Matrix"],
                             reference=ReferenceFilms({"matrix": matrix}), min_films=1)


@pytest.fixture(scope="module")
def examples(sources):
    return S.synthesise(sources, 600, seed=3)


def test_synthesis_is_seeded(sources, examples):
    assert S.synthesise(sources, 600, seed=3) == examples
    assert [e.text for e in S.synthesise(sources, 50, seed=4)] != [e.text for e in examples[:50]]


def test_every_answer_is_the_agents_prompt_and_a_form_the_grammar_allows(examples):
    schema = state_schema()
    for ex in examples:
        assert list(ex.messages) == extraction_messages(ex.text)  # the same prompt files
        assert ex.answer == form_text(ex.form)
        form = json.loads(ex.answer)
        jsonschema.validate(form, schema)
        assert list(form) == [k for k in FIELDS if k in form]  # the order the model fills


def test_the_answers_read_back_as_meant(sources, examples):
    for ex in examples:
        p = parse_extraction(ex.answer, ex.text, sources.title_index, people=sources.people_index,
                             reference=sources.reference)
        titles = ex.form.get("liked_titles", []) + ex.form.get("disliked_titles", [])
        assert len(p.liked) + len(p.disliked) + len(p.outside) == len(titles), ex.text
        assert len(p.people) == len(ex.form.get("people", [])), ex.text
        assert (p.year_min, p.year_max) == (ex.form.get("year_min"), ex.form.get("year_max"))
        for value in titles + ex.form.get("people", []):
            assert value.lower() in ex.text.lower()  # copied as written, never corrected
        assert not set(p.genres) & set(p.excluded_genres)


def test_targets_follow_the_vocabulary_and_the_year_rules(examples):
    vocab = load_vocabulary()
    violence = list(vocab.concepts["violence"][1])
    bounds = 0
    for ex in examples:
        assert set(ex.form.get("moods", [])) <= set(vocab.moods)
        if re.search(r"\b(no|without|nothing) (violence|blood)\b", ex.text, re.I):
            assert set(violence) <= set(ex.form["excluded_genres"]), ex.text
        # "after 1990" starts in 1991 and "before 1980" ends in 1979, as the rules read them.
        if m := re.search(r"\bafter (\d{4})\b", ex.text):
            assert ex.form["year_min"] == int(m[1]) + 1, ex.text
            bounds += 1
        if m := re.search(r"\bbefore (\d{4})\b", ex.text):
            assert ex.form["year_max"] == int(m[1]) - 1, ex.text
            bounds += 1
        if re.search(r"\b(eighties|1980s|80s)\b", ex.text.lower()):
            assert (ex.form["year_min"], ex.form["year_max"]) in ((1980, 1989), (1970, 1989))
    assert bounds >= 2  # the checks above ran


def test_the_mix_covers_what_people_write(examples):
    counts = S.skill_counts(examples)
    for skill in ("typo", "lower", "fr", "es", "de", "empty", "concept", "compound", "outside",
                  "mood", "years", "person", "director", "disliked", "excluded"):
        assert counts.get(skill, 0) >= 5, (skill, counts)
    assert 0.03 < counts["empty"] / len(examples) < 0.15
    assert all(ex.form == {} for ex in examples if "empty" in ex.skills)


def test_validation_asks_about_titles_and_people_training_never_saw(sources):
    train, valid = state_sources.split_sources(sources, 0.3, seed=0)
    assert valid.titles and train.titles
    assert not set(train.titles) & set(valid.titles)
    assert not set(train.people) & set(valid.people)
    assert set(train.titles) | set(valid.titles) == set(sources.titles)


def test_no_hand_written_request_is_ever_synthesised():
    texts = set()
    for name in ("requests_heldout.jsonl", "requests_dev.jsonl"):
        path = DATA / name
        if path.exists():
            texts |= {json.loads(line)["text"].lower().strip(" ?!.")
                      for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    if not texts:
        pytest.skip("no hand-written request files")
    src = state_sources.catalog_sources(tiny_items(), min_films=1)
    made = {ex.text.lower().strip(" ?!.") for ex in S.synthesise(src, 3000, seed=0)}
    assert not made & texts


def test_examples_round_trip_through_a_file(tmp_path, examples):
    S.save_examples(tmp_path / "x.jsonl", examples[:20])
    assert S.load_examples(tmp_path / "x.jsonl") == examples[:20]
