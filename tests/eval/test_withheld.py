import pytest

from eval.withheld import run_withheld, summarize, WithheldCase


def test_summary_counts_turns_and_picks():
    cases = [WithheldCase(1, "A", True, False, [2, 3], 1.0, 0.5),
             WithheldCase(4, "B", False, True, [5], 0.0, 0.0)]
    s = summarize(cases)
    assert s == {"titles": 2, "said_not_in_catalog": 0.5, "linked_to_another_title": 0.5,
                 "turns_sharing_a_genre": 0.5, "picks_sharing_a_genre": 0.5,
                 "picks_cowatched": 0.25, "guess_shares_a_genre": None}
    guessed = [WithheldCase(1, "A", True, False, [2], 1.0, 0.0, ("Drama", "War"), ("War",)),
               WithheldCase(4, "B", True, False, [5], 0.0, 0.0, ("Comedy",), ()),
               WithheldCase(6, "C", True, False, [7], 0.0, 0.0, ("Horror",), ("Drama",))]
    assert summarize(guessed)["guess_shares_a_genre"] == pytest.approx(1 / 3)


@pytest.mark.assets
def test_withheld_titles_are_said_and_resembled(real_settings, tmp_path):
    report = run_withheld(real_settings, 8, tmp_path, log=lambda m: None)
    with_table = report["with_reference"]["summary"]
    without = report["without_reference"]["summary"]
    assert with_table["titles"] == 8
    assert with_table["said_not_in_catalog"] >= 0.75
    assert with_table["turns_sharing_a_genre"] >= 0.75
    assert with_table["picks_sharing_a_genre"] > without["picks_sharing_a_genre"]
    assert (tmp_path / "withheld.md").read_text().startswith("# Titles outside the catalog")
    for case in report["with_reference"]["cases"]:
        assert case["item_id"] not in case["picks"]  # withheld means never recommended


@pytest.mark.assets
def test_tailor_eval_withheld_with_guesses_writes_four_arms(real_settings, tmp_path):
    """The command line, with the LLM guessing: four arms, a guess per case, and the
    guessed genres are catalog genres only (the schema's enum)."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, TAILOR_HOME=str(real_settings.home))
    run = subprocess.run([sys.executable, "-m", "agent", "eval", "--withheld", "2",
                          "--guess-titles", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "withheld.json").read_text())
    arms = ("with_reference", "without_reference", "llm_guess", "constant_guess")
    assert all(report[a]["summary"]["titles"] == 2 for a in arms)
    genres = {"Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"}
    for case in report["llm_guess"]["cases"]:
        assert case["guessed_genres"] is not None and set(case["guessed_genres"]) <= genres
    assert all(c["guessed_genres"] == report["constant_guess_genres"]
               for c in report["constant_guess"]["cases"])
    header = (tmp_path / "withheld.md").read_text().split("\n")[4]
    assert header.endswith("| llm guess | constant guess |"), header
