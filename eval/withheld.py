"""Titles outside the catalog, measured: well-known films are withheld from the title
index (so linking fails, as it does for a film the catalog lacks) and from the picks,
and the user asks for "something like <title>".

Per title it records whether the reply says the title is not in the catalog, and
whether its picks resemble the withheld film: the share that share a genre with it
(the issue's measure) and the share among the 50 films most co-watched with it (what
its real viewers went on to watch; the interactions were never shown to the parser).
Run with the reference film table and without it, so the table's part is visible; with
``guess`` also without the table but with the LLM describing each title
(``agent.understand.title_guess``), beside a guesser that always names the catalog's two most
common genres, so the model's knowledge is told apart from base rates.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from agent.domain.movielens.reference import ReferenceFilms
from agent.types import DialogueState
from agent.understand.linking import TitleIndex

REQUEST = "something like {title}"
COWATCH_TOP = 50


@dataclass
class WithheldCase:
    item_id: int
    title: str
    said_outside: bool  # the reply names it as not in the catalog
    linked_elsewhere: bool  # the parser linked another catalog title instead
    picks: list[int]
    genre_share: float  # picks sharing a genre with the withheld film
    cowatch_share: float  # picks among its COWATCH_TOP most co-watched films
    genres: tuple[str, ...] = ()  # the withheld film's own
    guessed_genres: tuple[str, ...] | None = None  # what the title guesser said (None: none)


def share(picks, good) -> float:
    """Share of ``picks`` in ``good`` (0 for no picks).

    >>> share([1, 2, 3, 4], {2, 4, 9}), share([], {1})
    (0.5, 0.0)
    """
    return sum(p in good for p in picks) / len(picks) if picks else 0.0


def withheld_titles(catalog, reference, n: int) -> list[int]:
    """The ``n`` most-watched catalog films the reference table knows by title."""
    known = [it for it in sorted(catalog.items.values(), key=lambda it: (-it.popularity, it.id))
             if reference is not None and reference.lookup(it.title) is not None]
    return [it.id for it in known[:n]]


def run_case(rec, item_id: int) -> WithheldCase:
    """One turn with ``item_id`` gone from the title index and from the picks."""
    catalog = rec.catalog
    item = catalog.get(item_id)
    full_index = rec.title_index
    rec.title_index = TitleIndex([it for it in catalog.items.values() if it.id != item_id])
    try:
        reply = rec.turn(REQUEST.format(title=item.title), DialogueState(shown=(item_id,)))
    finally:
        rec.title_index = full_index
    picks = [r.item.id for r in reply.recommendations]
    genres = {i for i, it in catalog.items.items()
              if set(it.values("genres")) & set(item.values("genres"))}
    cowatched = {i for i, _ in catalog.cowatched_with([item_id], COWATCH_TOP)}
    guessed = None
    if rec.guesser is not None:  # cached: the turn above asked it already
        film = rec.guesser.guess(item.title)
        guessed = film.genres if film else ()
    return WithheldCase(item_id, item.label, "is not in the catalog" in reply.text,
                        bool(reply.state.liked), picks, share(picks, genres),
                        share(picks, cowatched), item.values("genres"), guessed)


def summarize(cases: list[WithheldCase]) -> dict:
    n = len(cases) or 1
    return {"titles": len(cases),
            "said_not_in_catalog": sum(c.said_outside for c in cases) / n,
            "linked_to_another_title": sum(c.linked_elsewhere for c in cases) / n,
            "turns_sharing_a_genre": sum(c.genre_share > 0 for c in cases) / n,
            "picks_sharing_a_genre": sum(c.genre_share for c in cases) / n,
            "picks_cowatched": sum(c.cowatch_share for c in cases) / n,
            "guess_shares_a_genre": (None if any(c.guessed_genres is None for c in cases)
                                     else sum(bool(set(c.guessed_genres) & set(c.genres))
                                              for c in cases) / n)}


class ConstantGuess:
    """A guesser backend that always names the same genres: the base rate a model's
    guesses are compared with."""

    name = "constant"

    def __init__(self, genres):
        self.answer = json.dumps({"genres": list(genres)})

    def generate_json(self, messages, schema, max_new_tokens):
        return self.answer


def run_withheld(settings, n: int, out: Path, log=print, guess: bool = False) -> dict:
    """Measure ``n`` withheld titles with and without the reference table (and, with
    ``guess``, with the configured LLM or a constant guess in its place); writes
    ``withheld.json`` and ``withheld.md`` to ``out``."""
    from collections import Counter

    from tqdm import tqdm

    from agent.build import build_recommender, make_backend
    from agent.llm.fake import FakeBackend
    from agent.understand.title_guess import TitleGuesser

    # The turn's parsing and retrieval are what is measured; ranking by the LLM would
    # only reorder the same candidates, so a fake backend keeps this a CPU-minute job.
    rec = build_recommender(replace(settings, explain="template"), backend=FakeBackend(),
                            log=log)
    reference = rec.reference
    ids = withheld_titles(rec.catalog, reference, n)
    report, t0 = {"request": REQUEST, "cowatch_top": COWATCH_TOP}, time.perf_counter()
    arms = [("with_reference", reference, None), ("without_reference", None, None)]
    if guess:
        genres = Counter(g for it in rec.catalog.items.values() for g in it.values("genres"))
        catalog_genres = set(genres)
        top2 = [g for g, _ in genres.most_common(2)]
        arms += [("llm_guess", ReferenceFilms({}), TitleGuesser(make_backend(settings),
                                                                catalog_genres)),
                 ("constant_guess", ReferenceFilms({}),
                  TitleGuesser(ConstantGuess(top2), catalog_genres))]
        report["constant_guess_genres"] = top2
    for name, table, guesser in arms:
        rec.reference = rec.retriever.reference = table
        rec.guesser = guesser
        t = time.perf_counter()
        cases = [run_case(rec, i) for i in tqdm(ids, desc=f"withheld ({name})", unit="title")]
        report[name] = {"summary": summarize(cases), "cases": [c.__dict__ for c in cases],
                        "seconds_per_turn": (time.perf_counter() - t) / max(len(ids), 1)}
    rec.reference = rec.retriever.reference = reference
    rec.guesser = None
    report["wall_time_s"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "withheld.json").write_text(json.dumps(report, indent=2))
    (out / "withheld.md").write_text(render(report))
    return report


def render(report: dict) -> str:
    arms = [a for a in ("with_reference", "without_reference", "llm_guess", "constant_guess")
            if a in report]
    rows = ["| | " + " | ".join(a.replace("_", " ") for a in arms) + " |",
            "|---" * (len(arms) + 1) + "|"]
    summaries = [report[a]["summary"] for a in arms]
    for key in ("said_not_in_catalog", "linked_to_another_title", "turns_sharing_a_genre",
                "picks_sharing_a_genre", "picks_cowatched", "guess_shares_a_genre"):
        cells = ["-" if s[key] is None else f"{s[key]:.2f}" for s in summaries]
        rows.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
    a = summaries[0]
    return (f"# Titles outside the catalog: {a['titles']} withheld films\n\n"
            f"Request: \"{report['request']}\"; co-watched = among the film's "
            f"{report['cowatch_top']} most co-watched.\n\n" + "\n".join(rows) + "\n")
