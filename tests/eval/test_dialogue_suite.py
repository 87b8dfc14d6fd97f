"""The dialogue suite: every check can pass and fail, the file is validated with errors
that name the dialogue and turn, dialogues run and report, and (on the real assets) the
packaged suite passes at least as many dialogues as it did when the floor was set."""

import json
from dataclasses import replace

import pytest

from agent.domain.movielens.film import film
from agent.data.catalog import Catalog
from agent.errors import ConfigError
from agent.llm.fake import FakeBackend
from agent.recommender import CLARIFY, OFF_TOPIC
from agent.types import DialogueState as DS
from eval.dialogue_checks import CHECKS, INVARIANTS, Seen
from eval.dialogue_suite import load_suite, packaged_suite, run_dialogue, run_suite
from tests.conftest import tiny_items
from tests.agent.turn.test_recommender import make

# Dialogues of the packaged suite fully passed on the real assets (ML-100K, Chroma,
# retrieval order: the fake ranker, since the 135M LLM ranker makes the run ~12 min on 2
# cores) when this was set, less one: 29/30 both with the 30-epoch SASRec and fusion that
# `make test` trains and with reciprocal-rank fusion alone, and SASRec trained on
# another machine turns out a little different. A change that passes fewer fails CI;
# raise it when a fix passes more. The LLM-ranked run is `tailor eval --dialogue-suite`.
PASS_FLOOR = 28

ITEMS = {it.id: it for it in tiny_items()}
ALIEN, TOY, HEAT = ITEMS[1], ITEMS[5], ITEMS[6]  # 1979 horror sci-fi; 1995 animation; 1995 crime
RELAXED = "Few films are Crime and Western at once, so these are any of them.\nLooking for: x."

# key: (value as the loader resolves it, a turn where it holds, a turn where it fails,
#       a word the failure's detail must name)
CASES = {
    "liked": ((1,), Seen(state=DS(liked=(1,))), Seen(state=DS(liked=(5,)), items=ITEMS), "Alien"),
    "disliked": ((1,), Seen(state=DS(disliked=(1,))), Seen(items=ITEMS), "Alien"),
    "genres": (("Comedy",), Seen(state=DS(genres=("Comedy",))), Seen(state=DS(genres=("War",))),
               "Comedy"),
    "excluded_genres": (("Horror",), Seen(state=DS(excluded_genres=("Horror",))), Seen(),
                        "Horror"),
    "people": (("Al Pacino",), Seen(state=DS(people=("Al Pacino",))), Seen(), "Al Pacino"),
    "moods": (("cozy",), Seen(state=DS(moods=("cozy",))), Seen(state=DS(moods=("dark",))),
              "cozy"),
    "not_liked": ((1,), Seen(), Seen(state=DS(liked=(1,)), items=ITEMS), "Alien"),
    "not_disliked": ((1,), Seen(), Seen(state=DS(disliked=(1,)), items=ITEMS), "Alien"),
    "not_genres": (("Film-Noir",), Seen(), Seen(state=DS(genres=("Film-Noir",))), "Film-Noir"),
    "not_people": (("Al Pacino",), Seen(), Seen(state=DS(people=("Al Pacino",))), "Al Pacino"),
    "year_min": (1990, Seen(state=DS(year_min=1990)), Seen(state=DS(year_min=1993)), "1993"),
    "year_max": (None, Seen(), Seen(state=DS(year_max=1979)), "1979"),
    "lesser_known": (True, Seen(state=DS(lesser_known=True)), Seen(), "False"),
    "well_liked": (True, Seen(state=DS(well_liked=True)), Seen(), "False"),
    "genre_or": (False, Seen(), Seen(state=DS(genre_or=True)), "True"),
    "liked_pick": (2, Seen(previous=(ALIEN, TOY), state=DS(liked=(5,))),
                   Seen(previous=(ALIEN, TOY), state=DS(liked=(1,)), items=ITEMS), "Toy Story"),
    "disliked_pick": (1, Seen(previous=(ALIEN, TOY), state=DS(disliked=(1,))),
                      Seen(previous=(TOY,)), "Toy Story"),
    "not_liked_pick": (1, Seen(previous=(ALIEN,), state=DS(disliked=(1,))),
                       Seen(previous=(ALIEN,), state=DS(liked=(1,))), "Alien"),
    "picks": (2, Seen(picks=(ALIEN, TOY)), Seen(picks=(ALIEN,)), "Alien"),
    "picks_year_min": (1990, Seen(picks=(TOY, HEAT)), Seen(picks=(ALIEN, TOY)), "Alien"),
    "picks_year_max": (1980, Seen(picks=(ALIEN,)), Seen(picks=(ALIEN, TOY)), "Toy Story"),
    "picks_have_genres": (("Action", "Thriller"), Seen(picks=(ALIEN, HEAT)),
                          Seen(picks=(ALIEN, TOY)), "Toy Story"),
    "picks_have_any_genre": (("Comedy", "Crime"), Seen(picks=(TOY, HEAT)),
                             Seen(picks=(ALIEN, TOY)), "Alien"),
    "picks_lack_genres": (("Horror",), Seen(picks=(TOY, HEAT)), Seen(picks=(ALIEN,)), "Horror"),
    "picks_credit": (("Al Pacino", "Tom Hanks"), Seen(picks=(TOY, HEAT)),
                     Seen(picks=(ALIEN, HEAT)), "Alien"),
    "picks_lack_people": (("Al Pacino",), Seen(picks=(ALIEN, TOY)), Seen(picks=(HEAT,)),
                          "Al Pacino"),
    "picks_include": ((5,), Seen(picks=(ALIEN, TOY)), Seen(picks=(ALIEN, HEAT), items=ITEMS),
                      "Toy Story"),
    "picks_exclude": ((1,), Seen(picks=(TOY, HEAT)), Seen(picks=(ALIEN, TOY)), "Alien"),
    "picks_lesser_known": (True, Seen(picks=(HEAT,), head=frozenset({1, 5})),
                           Seen(picks=(ALIEN,), head=frozenset({1, 5})), "Alien"),
    "picks_fit_first": (True, Seen(picks=(ITEMS[2], ITEMS[3]), state=DS(genres=("Sci-Fi",)),
                                   items=ITEMS),
                        Seen(picks=(ITEMS[2], TOY), state=DS(genres=("Sci-Fi",)), items=ITEMS),
                        "Toy Story"),
    "picks_quality_top": (0.2, Seen(picks=(ALIEN,), quality_share={1: 0.1}),
                          Seen(picks=(ALIEN,), quality_share={1: 0.5}), "50%"),
    "picks_older_than_previous": (True, Seen(picks=(ALIEN,), previous=(TOY,)),
                                  Seen(picks=(TOY,), previous=(ALIEN,)), "1979"),
    "picks_newer_than_previous": (True, Seen(picks=(TOY,), previous=(ALIEN,)),
                                  Seen(picks=(ALIEN,), previous=(TOY,)), "1995"),
    "reply_contains": (("not in the catalog",), Seen(text="The Matrix is not in the catalog."),
                       Seen(text="Looking for: anything."), "anything"),
    "reply_lacks": (("Looking for: anything",), Seen(text="Looking for: Sci-Fi."),
                    Seen(text="Looking for: anything."), "anything"),
    "asks": ("clarify", Seen(text=CLARIFY), Seen(text=OFF_TOPIC), "clarify"),
    "relaxed": (True, Seen(text=RELAXED, state=DS(genres=("Crime", "Western"))),
                Seen(text="Looking for: x.", state=DS(genres=("Crime", "Western"))), "loosened"),
}
INVARIANT_CASES = {
    "picks_new": (Seen(picks=(TOY,), earlier=frozenset({1})),
                  Seen(picks=(ALIEN,), earlier=frozenset({1})), "shown earlier"),
    "no_rated_pick": (Seen(picks=(TOY,), state=DS(liked=(1,))),
                      Seen(picks=(ALIEN,), state=DS(disliked=(1,))), "rated"),
}


def test_every_check_has_a_passing_and_a_failing_case():
    assert set(CASES) == set(CHECKS) and set(INVARIANT_CASES) == set(INVARIANTS)


@pytest.mark.parametrize("key", sorted(CASES))
def test_check_passes_and_fails(key):
    value, holds, fails, word = CASES[key]
    assert CHECKS[key].fn(value, holds) == ""
    detail = CHECKS[key].fn(value, fails)
    assert detail and word in detail, detail


@pytest.mark.parametrize("name", sorted(INVARIANT_CASES))
def test_invariant_passes_and_fails(name):
    holds, fails, word = INVARIANT_CASES[name]
    assert INVARIANTS[name](True, holds) == ""
    assert word in INVARIANTS[name](True, fails)


def test_the_opposite_asks_and_relaxed_values_fail_the_other_way():
    assert CHECKS["asks"].fn("off_topic", Seen(text=CLARIFY))
    assert CHECKS["relaxed"].fn(False, CASES["relaxed"][1]).startswith("said")
    assert CHECKS["relaxed"].fn(False, CASES["relaxed"][2]) == ""


def _weaver_90s(picks, state=DS(people=("Sigourney Weaver",), year_min=1990, year_max=1999),
                said=True):
    from agent.understand.state import relaxations

    why = [w for _, w in relaxations(state) if "years" in w][0]
    text = (why[0].upper() + why[1:] + ".\n" if said else "") + "Looking for: x."
    return Seen(text=text, picks=picks, state=state, items=ITEMS)


def test_a_loosened_pick_passes_a_pick_check_only_when_said_and_the_fits_ran_out():
    alien3, aliens = ITEMS[7], ITEMS[11]  # the tiny catalog's only Weaver film of the 90s
    check = CHECKS["picks_year_min"].fn
    assert check(1990, _weaver_90s((alien3, aliens))) == ""
    assert "Aliens" in check(1990, _weaver_90s((alien3, aliens), said=False))
    # A fitting film was left out for a loosened one.
    assert "Aliens" in check(1990, _weaver_90s((aliens, ALIEN)))
    # The pick fits the state, so the state (1980 on), not the catalog, let it in.
    loose = DS(people=("Sigourney Weaver",), year_min=1980, year_max=1999)
    assert "Aliens" in check(1990, _weaver_90s((alien3, aliens), state=loose))


def test_nothing_older_left_passes_older_only_when_said_and_nothing_older_fits():
    """The tiny catalog's oldest Sci-Fi film is 2001 (1968); after it, "something older"
    (year_max 1967) has nothing, and the turn widens the years and says so."""
    from agent.understand.state import relaxations

    state = DS(genres=("Sci-Fi",), year_max=1967, shown=(9,))
    why = [w for _, w in relaxations(state) if "years" in w][0]
    said = Seen(text=why[0].upper() + why[1:] + ".\nLooking for: x.", picks=(ALIEN,),
                state=state, items=ITEMS, previous=(ITEMS[9],))
    check = CHECKS["picks_older_than_previous"].fn
    assert ITEMS[9].value("year") == 1968 and check(True, said) == ""
    assert "1979" in check(True, replace(said, text="Looking for: x."))  # not said
    # An older Sci-Fi film exists once 2001 is not the oldest: then it had to be picked.
    older = replace(said, state=replace(state, year_max=1985), previous=(ITEMS[2],))
    assert check(True, older) == ""  # Alien (1979) is older than Blade Runner (1982)
    assert "Toy Story" in check(True, replace(older, picks=(TOY,)))  # Alien fit: not loosened


def test_relaxed_holds_without_the_sentence_when_enough_fit_and_were_picked():
    state = DS(genres=("Sci-Fi",))  # five Sci-Fi films in the tiny catalog
    enough = Seen(text="Looking for: Sci-Fi.", picks=(ITEMS[2], ITEMS[3]), state=state,
                  items=ITEMS)
    assert CHECKS["relaxed"].fn(True, enough) == ""
    # ... but not when a pick does not fit, nor when nothing was picked.
    assert CHECKS["relaxed"].fn(True, replace(enough, picks=(ITEMS[2], TOY)))
    assert CHECKS["relaxed"].fn(True, replace(enough, picks=()))


def test_year_checks_fail_a_pick_without_a_year():
    undated = film(99, "Undated", None, ("Drama",))
    assert CHECKS["picks_year_min"].fn(1900, Seen(picks=(undated,))) == "Undated"


# The file -----------------------------------------------------------------------------

def suite(*dialogues) -> dict:
    return {"dialogues": list(dialogues)}


def dialogue(id="d1", turns=None) -> dict:
    return {"id": id, "about": ["refinement"], "turns": turns or [
        {"say": "I loved Alien", "expect": {"liked": ["Alien"], "picks": 2}},
        {"say": "something from the 90s", "expect": {"year_min": 1990, "picks_year_min": 1990}},
        {"feedback": "like", "pick": 1, "expect": {"liked_pick": 1}},
    ]}


def write(tmp_path, data) -> object:
    path = tmp_path / "dialogues.json"
    path.write_text(json.dumps(data))
    return path


def test_a_valid_suite_loads_with_titles_as_item_ids(tmp_path, catalog):
    [d] = load_suite(write(tmp_path, suite(dialogue())), catalog)
    assert d.id == "d1" and len(d.turns) == 3
    assert d.turns[0].expect == {"liked": (1,), "picks": 2}
    assert d.turns[2].say is None and d.turns[2].feedback == ("like", 1)


def broken(change) -> dict:
    d = dialogue()
    change(d)
    return suite(d)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["turns"][1]["expect"].update(picks_year=1990),
     "dialogue 'd1', turn 2: unknown expectation 'picks_year'"),
    (lambda d: d["turns"][0]["expect"].update(liked=["The Matrix"]),
     "dialogue 'd1', turn 1: title 'The Matrix' is not in the catalog"),
    (lambda d: d["turns"][1]["expect"].update(picks_credit=["Tom Hanx"]),
     "dialogue 'd1', turn 2: 'Tom Hanx' not among the catalog people"),
    (lambda d: d["turns"][1]["expect"].update(genres=["Scifi"]),
     "turn 2: 'Scifi' not among the catalog genres"),
    (lambda d: d["turns"][1]["expect"].update(moods=["spooky"]),
     "turn 2: 'spooky' not among the vocabulary moods"),
    (lambda d: d["turns"][0]["expect"].update(picks="three"), "turn 1: expected a count >= 0"),
    (lambda d: d["turns"][0]["expect"].update(year_max="1990"), "turn 1: expected a year or null"),
    (lambda d: d["turns"][2]["expect"].update(picks=2),
     "turn 3: 'picks' checks a reply, and a feedback turn has none"),
    (lambda d: d["turns"][2].update(feedback="love"), "turn 3: a turn needs \"say\" or"),
    (lambda d: d["turns"][0].update(sya="typo"), "turn 1: unknown turn field(s) ['sya']"),
    (lambda d: d["turns"].pop(), "dialogue 'd1': a dialogue has 3 to 5 turns"),
])
def test_a_broken_suite_names_the_dialogue_and_turn(tmp_path, catalog, change, message):
    with pytest.raises(ConfigError, match="dialogues.json: ") as e:
        load_suite(write(tmp_path, broken(change)), catalog)
    assert message in str(e.value)


def test_duplicate_ids_and_ambiguous_titles_are_errors(tmp_path, catalog):
    with pytest.raises(ConfigError, match="unique"):
        load_suite(write(tmp_path, suite(dialogue(), dialogue())), catalog)
    items = tiny_items() + [film(13, "Heat", 1972, ("Drama",))]
    twice = Catalog(items, {}, catalog.user, catalog.item, catalog.timestamp, set())
    d = dialogue()
    d["turns"][0]["expect"]["liked"] = ["Heat"]
    with pytest.raises(ConfigError, match=r"'Heat' is ambiguous; write Heat \(1995\) or Heat "):
        load_suite(write(tmp_path, suite(d)), twice)
    d["turns"][0]["expect"]["liked"] = ["Heat (1972)"]
    assert load_suite(write(tmp_path, suite(d)), twice)[0].turns[0].expect["liked"] == (13,)


def test_the_packaged_suite_is_thirty_dialogues_of_three_to_five_turns():
    data = json.loads(packaged_suite().read_text())
    dialogues = data["dialogues"]
    assert len(dialogues) == 30 and len({d["id"] for d in dialogues}) == 30
    assert all(3 <= len(d["turns"]) <= 5 for d in dialogues)
    tags = {t for d in dialogues for t in d["about"]}
    assert {"refinement", "reference", "relaxation", "dislike", "compound", "unknown-title",
            "outside-title", "people", "mood", "hidden-gems", "vague-then-specific",
            "off-topic", "feedback"} <= tags
    keys = {k for d in dialogues for t in d["turns"] for k in t.get("expect", {})}
    assert keys <= set(CHECKS)


# Running ------------------------------------------------------------------------------

def loaded(tmp_path, catalog, *dialogues):
    return load_suite(write(tmp_path, suite(*dialogues)), catalog)


def test_a_dialogue_runs_turn_by_turn_with_feedback(tmp_path, catalog):
    [d] = loaded(tmp_path, catalog, dialogue())
    result = run_dialogue(make(catalog, FakeBackend()), d, catalog, {})
    assert result["passed"], result
    first, second, click = result["turns"]
    assert first["picks"] and [c["check"] for c in first["checks"]] == [
        "liked", "picks", "picks_new", "no_rated_pick"]
    assert second["state"]["year_min"] == 1990
    assert click["reply"] == "" and [c["check"] for c in click["checks"]] == ["liked_pick"]


def test_a_failing_expectation_is_reported_with_what_the_agent_did(tmp_path, catalog):
    d = dialogue()
    d["turns"][1]["expect"]["picks_have_genres"] = ["Comedy", "Horror"]
    [d] = loaded(tmp_path, catalog, d)
    result = run_dialogue(make(catalog, FakeBackend()), d, catalog, {})
    assert not result["passed"] and [t["passed"] for t in result["turns"]] == [True, False, True]
    [bad] = [c for c in result["turns"][1]["checks"] if not c["ok"]]
    assert bad["check"] == "picks_have_genres" and "lacks " in bad["detail"]


class Crashes:
    """A recommender whose second turn raises (a bug in the agent)."""

    def __init__(self, rec):
        self.rec, self.calls = rec, 0

    def turn(self, message, state):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("planted bug")
        return self.rec.turn(message, state)


def test_a_turn_that_raises_fails_and_ends_its_dialogue(tmp_path, catalog):
    [d] = loaded(tmp_path, catalog, dialogue())
    result = run_dialogue(Crashes(make(catalog, FakeBackend())), d, catalog, {})
    _, crashed, skipped = result["turns"]
    assert crashed["checks"][0]["detail"] == "RuntimeError: planted bug"
    assert "not run" in skipped["checks"][0]["detail"] and not result["passed"]


def test_run_suite_writes_the_pass_rate_and_the_failures(tmp_path, catalog):
    bad = dialogue("d2")
    bad["turns"][0]["expect"]["picks_lack_genres"] = ["Horror", "Sci-Fi", "Thriller", "Crime",
                                                       "Drama", "Film-Noir", "Comedy"]
    path = write(tmp_path, suite(dialogue(), bad))
    from agent.settings import Settings

    report = run_suite(Settings(home=tmp_path), path, tmp_path / "out", progress=False,
                       recommender=make(catalog, FakeBackend()))
    s = report["summary"]
    assert s["dialogues"] == {"passed": 1, "total": 2, "rate": 0.5}
    assert s["turns"]["passed"] == 5 and s["turns"]["total"] == 6
    assert json.loads((tmp_path / "out" / "report.json").read_text())["summary"] == s
    md = (tmp_path / "out" / "report.md").read_text()
    assert "1/2 (50.0%)" in md and "| d2 | 2/3 | FAIL |" in md and "`picks_lack_genres:" in md


def test_cli_runs_the_suite_and_exits_0_even_when_dialogues_fail(tmp_path, catalog, monkeypatch,
                                                                 capsys):
    import agent.build
    from agent.interfaces.cli import main

    bad = dialogue("d2")
    bad["turns"][0]["expect"]["picks"] = 3
    path = write(tmp_path, suite(dialogue(), bad))
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    monkeypatch.setattr(Catalog, "load", classmethod(lambda cls, folder: catalog))
    monkeypatch.setattr(agent.build, "build_recommender",
                        lambda settings, backend=None, log=print: make(catalog, FakeBackend()))
    assert main(["eval", "--dialogue-suite", str(path), "--out", str(tmp_path / "o")]) == 0
    assert "dialogues fully passed 1/2 (50%)" in capsys.readouterr().err
    assert (tmp_path / "o" / "report.md").is_file()


def test_cli_reports_a_broken_suite_before_loading_the_model(tmp_path, catalog, monkeypatch,
                                                             capsys):
    import agent.build
    from agent.interfaces.cli import main

    path = write(tmp_path, broken(lambda d: d["turns"][0]["expect"].update(likd=["Alien"])))
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    monkeypatch.setattr(Catalog, "load", classmethod(lambda cls, folder: catalog))
    monkeypatch.setattr(agent.build, "build_recommender", lambda *a, **k: pytest.fail("built"))
    assert main(["eval", "--dialogue-suite", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "turn 1: unknown expectation 'likd'" in capsys.readouterr().err


@pytest.mark.assets
@pytest.mark.slow
def test_the_packaged_suite_passes_at_least_the_floor_on_the_real_assets(real_settings, tmp_path):
    report = run_suite(real_settings, packaged_suite(), tmp_path, fake_llm=True,
                       log=lambda m: None, progress=False)
    s = report["summary"]["dialogues"]
    failing = {d["id"]: next(f"turn {t['turn']} {c['check']}: {c['detail']}"
                             for t in d["turns"] for c in t["checks"] if not c["ok"])
               for d in report["dialogues"] if not d["passed"]}
    assert s["total"] == 30
    assert s["passed"] >= PASS_FLOOR, json.dumps(failing, indent=1)
