"""The request-understanding scorer (eval/understanding.py) and its two request files:
scoring rules on hand-made cases with hand-computed values, the files' well-formedness
against the real catalog, and one small run through the real recommender."""

import json
import re

import pytest

from agent.domain.movielens.film import credits
from agent.domain.movielens.loaders import ML_GENRES
from agent.types import DialogueState
from agent.understand.parse import ParsedMessage
from agent.understand.vocabulary import load_vocabulary
from eval.understanding import (DEFAULT, HELDOUT, SLOTS, failure_kinds, load_requests,
                                picks_fit, resolve, slot_counts, state_slots, summarize,
                                value_matches)
from eval.understanding_run import PickJudge, run_understanding
from tests.conftest import tiny_items

DEV = HELDOUT.with_name("requests_dev.jsonl")
VIOLENCE = ["Action", "Crime", "Horror", "War"]


def got(**slots):
    return {**DEFAULT, **slots}


def case(request, parsed, picks=(), fit=True):
    want, wrong = resolve(request, parsed)
    return {"id": request["id"], "text": "t", "resolved": want, "got": parsed, "wrong": wrong,
            "agree": not wrong, "fit": fit, "picks": list(picks), "bad_picks": {}}


# --- matching and readings -------------------------------------------------------------

def test_a_choice_needs_one_of_its_values_and_allows_nothing_else():
    want = ["Animation", VIOLENCE]  # "nothing animated, no violence"
    assert value_matches("excluded_genres", ["Animation", "War"], want)
    assert value_matches("excluded_genres", ["Animation", *VIOLENCE], want)
    assert not value_matches("excluded_genres", ["Animation"], want)
    assert not value_matches("excluded_genres", ["War"], want)
    assert not value_matches("excluded_genres", ["Animation", "War", "Drama"], want)


def test_titles_outside_the_catalog_ignore_case_articles_accents_and_year():
    assert value_matches("outside", ["Amélie (2001)"], ["amelie"])
    assert not value_matches("outside", ["The Matrix (1999)"], ["The Matrix", "Inception"])
    assert not value_matches("liked", ["the godfather"], ["The Godfather"])  # catalog titles


def test_per_slot_alternatives_vary_independently():
    req = {"id": "x", "expect": {"year_max": 1979}, "accept": {"year_max": [1980]}}
    assert resolve(req, got(year_max=1980)) == (got(year_max=1980), [])
    want, wrong = resolve(req, got(year_max=1981, genres=["War"]))
    assert wrong == ["genres", "year_max"] and want["year_max"] == 1979 and want["genres"] == []


def test_a_reading_links_slots_so_neither_is_wrong():
    req = {"id": "x", "expect": {"genres": ["Horror"]},
           "accept": {"readings": [{"genres": [], "moods": ["scary"]}, {"moods": ["scary"]}]}}
    assert resolve(req, got(genres=["Horror"]))[1] == []
    assert resolve(req, got(moods=["scary"]))[1] == []
    assert resolve(req, got(genres=["Horror"], moods=["scary"]))[1] == []
    want, wrong = resolve(req, got())
    assert wrong == ["genres"] and want["genres"] == ["Horror"]  # the first reading wins a tie


def test_a_wrong_choice_is_scored_against_all_of_its_values():
    req = {"id": "x", "expect": {}, "accept": {"excluded_genres": [[VIOLENCE]]}}
    assert resolve(req, got())[1] == []  # the default is the expectation; a choice is extra
    want, wrong = resolve(req, got(excluded_genres=["Drama"]))
    assert wrong == ["excluded_genres"] and want["excluded_genres"] == []
    req = {"id": "y", "expect": {"excluded_genres": ["Horror"]},
           "accept": {"excluded_genres": [["Horror", VIOLENCE]]}}
    assert resolve(req, got(excluded_genres=["Horror", "War"]))[1] == []


def test_an_unasked_quality_prior_is_no_disagreement_unless_gems_were_asked_for():
    want, wrong = resolve({"id": "x", "expect": {"people": ["Tom Hanks"]}},
                          got(people=["Tom Hanks"], well_liked=True, popular=True))
    assert wrong == [] and not want["well_liked"] and not want["popular"]  # not asked of picks
    gems = {"id": "y", "expect": {"lesser_known": True}}
    assert resolve(gems, got(lesser_known=True, well_liked=True))[1] == ["well_liked"]
    assert resolve({"id": "z", "expect": {"well_liked": True}}, got())[1] == ["well_liked"]


# --- counts, shares, kinds -------------------------------------------------------------

def test_slot_counts_are_micro_over_values_and_one_per_scalar():
    assert slot_counts("genres", ["Crime", "Comedy", "Horror"], ["Crime", "Comedy"]) == (2, 1, 0)
    assert slot_counts("people", [], ["Tom Hanks"]) == (0, 0, 1)
    assert slot_counts("year_min", None, 1990) == (0, 0, 1)
    assert slot_counts("year_min", 1991, 1990) == (0, 1, 1)
    assert slot_counts("genre_or", True, True) == (1, 0, 0)


def test_summary_of_two_hand_made_cases():
    a = case({"id": "a", "expect": {"genres": ["Crime", "Comedy"]}},
             got(genres=["Crime"], year_min=1990), fit=True)
    b = case({"id": "b", "expect": {"people": ["Tom Hanks"], "year_min": 1990}},
             got(people=["Tom Hanks"], year_min=1990), fit=False)
    a["parse_s"], b["parse_s"], a["turn_s"], b["turn_s"] = 0.001, 0.003, 0.5, 1.5
    s = summarize([a, b])
    assert (s["n"], s["agree"], s["fit"], s["agree_and_fit"]) == (2, 0.5, 0.5, 0.0)
    assert s["slots"]["genres"] == {"tp": 1, "fp": 0, "fn": 1, "precision": 1.0, "recall": 0.5,
                                    "f1": pytest.approx(2 / 3)}
    assert s["slots"]["year_min"]["tp"] == 1 and s["slots"]["year_min"]["fp"] == 1
    assert s["slots"]["all"] == {"tp": 3, "fp": 1, "fn": 1, "precision": 0.75, "recall": 0.75,
                                 "f1": 0.75}
    assert s["slots"]["liked"]["precision"] is None
    assert s["time"]["parse_s"]["mean"] == pytest.approx(0.002)
    assert s["time"]["turn_s"]["p95"] == 1.5
    kinds = {k["kind"]: (k["count"], k["example"]) for k in s["failure_kinds"]}
    assert kinds == {"genres missing": (1, "a"), "year_min extra": (1, "a"),
                     "picks: none given": (1, "b")}


def test_failure_kinds_name_wrong_values_and_broken_picks():
    c = case({"id": "c", "expect": {"year_max": 1979}}, got(year_max=1985), fit=False)
    c["bad_picks"] = {"Heat (1995)": ["years", "lesser_known"]}
    assert failure_kinds(c) == ["year_max wrong", "picks: lesser_known", "picks: years"]


def test_the_fit_rule():
    assert picks_fit([True, True, True], 5, 3, silent=False)
    assert not picks_fit([True, True, False], 5, 3, silent=False)
    assert picks_fit([False, True, False], 1, 3, silent=False)  # 1 < top_k: a relaxation
    assert not picks_fit([False, False, False], 2, 3, silent=False)
    assert picks_fit([False], 0, 3, silent=False)  # nothing can fit
    assert not picks_fit([], 3, 3, silent=False)
    assert picks_fit([], 50, 3, silent=True) and not picks_fit([True], 50, 3, silent=True)


# --- picks against the expected state (twelve-film catalog) ----------------------------

@pytest.fixture
def judge():
    items = {it.id: it for it in tiny_items()}
    return PickJudge(items, head={1, 3, 5, 11}, well_liked={1, 3, 4}, top_k=3)


def test_expected_state_and_the_films_that_fit_it(judge):
    items = judge.items
    want = got(genres=["Sci-Fi", "Horror"], liked=["Alien"], year_min=1980)
    state = judge.expected_state(want)
    assert state.liked == (1,) and state.genres == ("Sci-Fi", "Horror")
    fits = sorted(i for i, it in items.items() if judge.meets(it, state, want))
    assert fits == [7, 12]  # Alien 3, Species; Alien itself is liked, not a pick
    verdict = judge.judge([items[7], items[12], items[3]], want)
    assert verdict == {"n_fitting": 2, "fit": True,
                       "bad_picks": {"Terminator 2: Judgment Day (1991)": ["genres"]}}


def test_flags_lesser_known_popular_well_liked(judge):
    items = judge.items
    hidden = got(genres=["Sci-Fi"], lesser_known=True)
    verdict = judge.judge([items[2], items[3], items[7]], hidden)
    assert verdict["n_fitting"] == 5 and not verdict["fit"]  # 2, 7, 8, 9, 12: tail Sci-Fi
    assert verdict["bad_picks"] == {"Terminator 2: Judgment Day (1991)": ["lesser_known"]}
    best = got(well_liked=True)
    assert judge.judge([items[1], items[3], items[4]], best) == {
        "n_fitting": 3, "fit": True, "bad_picks": {}}
    assert judge.problems(items[12], judge.expected_state(got(popular=True)),
                          got(popular=True)) == ["popular"]


def test_a_vague_request_fits_only_with_no_picks(judge):
    assert judge.judge([], got(vague=True)) == {"n_fitting": 0, "fit": True, "bad_picks": {}}
    assert not judge.judge([judge.items[5]], got(off_topic=True))["fit"]


def test_state_slots_reads_the_state_the_turn_would_use():
    items = {it.id: it for it in tiny_items()}
    state = DialogueState(liked=(1,), disliked=(5,), genres=("Crime", "Comedy"),
                          year_max=1979, outside=("The Matrix (1999)",), tail_boost=0.0,
                          query="heist")
    slots = state_slots(state, ParsedMessage(), items, vague=False)
    assert slots == got(liked=["Alien"], disliked=["Toy Story"], genres=["Crime", "Comedy"],
                        year_max=1979, outside=["The Matrix (1999)"], popular=True)
    assert set(slots) == set(SLOTS)
    asked_back = state_slots(DialogueState(), ParsedMessage(off_topic=True), items, vague=True)
    assert asked_back == got(off_topic=True)


def test_a_malformed_request_file_names_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a", "text": "x", "expect": {"genre": ["Crime"]}}\n')
    with pytest.raises(ValueError, match=r"r.jsonl:1: unknown keys \['genre'\]"):
        load_requests(path)
    path.write_text('{"id": "a", "text": "x", "expect": {}}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(ValueError, match="r.jsonl:2: each request needs a unique id"):
        load_requests(path)


# --- the request files -----------------------------------------------------------------

def _values(v):
    for x in v if isinstance(v, list) else [v]:
        yield from (_values(x) if isinstance(x, list) else [x])


def _expectations(req):
    """Every (slot, value) the request names, in expect, alternatives and readings."""
    accept = req.get("accept", {})
    for block in [req["expect"], *accept.get("readings", [])]:
        for slot, v in block.items():
            yield from ((slot, x) for x in _values(v))
    for slot, alternatives in accept.items():
        if slot != "readings":
            yield from ((slot, x) for alt in alternatives for x in _values(alt))


def test_both_request_files_parse_and_use_known_genres_and_moods():
    held, dev = load_requests(HELDOUT), load_requests(DEV)
    assert (len(held), len(dev)) == (200, 140)
    moods = set(load_vocabulary().moods)
    for req in held + dev:
        for slot, v in _expectations(req):
            if slot in ("genres", "excluded_genres"):
                assert v in ML_GENRES, (req["id"], v)
            elif slot == "moods":
                assert v in moods, (req["id"], v)
            elif slot in ("year_min", "year_max"):
                assert v is None or 1900 <= v <= 2030, (req["id"], v)


def test_held_out_and_dev_share_no_text():
    def key(text):
        return " ".join(re.findall(r"\w+", text.lower()))

    held = {key(r["text"]) for r in load_requests(HELDOUT)}
    dev = {key(r["text"]) for r in load_requests(DEV)}
    assert len(held) == 200 and len(dev) == 140 and not held & dev


@pytest.mark.assets
def test_every_expected_title_and_person_is_real(real_settings):
    from agent.build import reference_films
    from agent.data.catalog import Catalog
    from agent.domain.movielens.facts import title_key

    catalog = Catalog.load(real_settings.data_dir())
    titles = {it.title for it in catalog.items.values()}
    keys = {title_key(t) for t in titles}
    people = {p for it in catalog.items.values() for p in credits(it)}
    reference = reference_films(real_settings, catalog, log=lambda msg: None)
    assert reference is not None, "the reference film table (movies.db) is part of the assets"
    for req in load_requests(HELDOUT) + load_requests(DEV):
        for slot, v in _expectations(req):
            where = (req["id"], slot, v)
            if slot in ("liked", "disliked"):
                assert v in titles, where
            elif slot == "people":
                assert v in people, where
            elif slot in ("outside", "not_found"):
                assert title_key(v) not in keys, where  # titles the catalog lacks
                assert (reference.lookup(v) is not None) == (slot == "outside"), where


@pytest.mark.assets
def test_a_small_run_through_the_real_recommender(real_settings, tmp_path):
    chosen = {"h001", "h026", "h062", "h083", "h087", "h111", "h129", "h150", "h162", "h177"}
    rows = [r for r in load_requests(HELDOUT) if r["id"] in chosen]
    rows.append({"id": "planted-1", "text": "what's the weather in Paris?",  # a wrong label
                 "expect": {"genres": ["Comedy"]}})
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_understanding(real_settings, path, tmp_path / "out", log=lambda msg: None)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["n"] == report["n"] == 11 and saved["errors"] == 0
    assert "| agree | picks fit |" in (tmp_path / "out" / "report.md").read_text()
    by_id = {c["id"]: c for c in report["cases"]}
    planted = by_id["planted-1"]
    assert not planted["agree"] and "genres" in planted["wrong"]
    assert planted["picks"] == [] and not planted["fit"]  # asked back where picks were due
    assert report["agree_and_fit"] <= min(report["agree"], report["fit"]) < 1
    assert all(c["parse_s"] > 0 and c["turn_s"] > 0 for c in report["cases"])
    assert report["slots"]["all"]["tp"] + report["slots"]["all"]["fn"] >= 10
