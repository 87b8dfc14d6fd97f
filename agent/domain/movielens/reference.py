"""Titles the user names that are not in the catalog.

"Something like The Matrix" names a film ML-100K lacks. Tailor says so, and looks the
title up in a reference film table (the CC0 table the catalog is enriched from, 17k
films 1940-2014) to learn what it is like: its genres (mapped to the catalog's) and
year. Those become an "any of these genres" wish, so the picks resemble it; nothing
from the reference table is ever recommended.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from agent.domain.movielens.facts import MAX_CAST, film_table_rows, split_names, title_key
from agent.domain.movielens.film import film
from agent.types import Item

# The reference table's genre names -> the catalog's (names not listed map to nothing).
GENRE_MAP = {"Family": "Children's", "Music": "Musical", "Film-Noir": "Film-Noir",
             "Sci-Fi": "Sci-Fi"}
CUES = re.compile(r"\b(?:like|liked|loved|love|enjoyed|adored|similar to|as good as|fan of|"
                  r"in the vein of|reminds? me of|such as|comme|como|wie)\s+", re.I)
STOP = re.compile(r"\s*(?:[,.;!?\"“”]|\bbut\b|\bor\b|\bfrom\b|\bwith\b|\bin\b\s+"
                  r"(?:the\s+)?\d|\bbefore\b|\bafter\b|\bthat\b|\bwhich\b)", re.I)
MAX_WORDS = 6
MAX_GUESSES = 1024


@dataclass(frozen=True)
class ReferenceFilm:
    title: str
    year: int | None
    genres: tuple[str, ...]  # in the catalog's genre names
    director: tuple[str, ...] = ()
    cast: tuple[str, ...] = ()
    guessed: bool = False  # the LLM's guess (agent.understand.title_guess), not the table's facts

    @property
    def label(self) -> str:
        # A guessed year is not shown as if it were known.
        return f"{self.title} ({self.year})" if self.year and not self.guessed else self.title

    def as_item(self) -> Item:
        """The film as an item to compare catalog items with (id -1: never recommended)."""
        return film(-1, self.title, self.year, self.genres, self.director, self.cast)


class ReferenceFilms:
    """Looks titles up by normalized key; the most-voted film wins a shared key."""

    def __init__(self, films: dict[str, ReferenceFilm]):
        self.films = films
        self.labels = {f.label: f for f in films.values()}
        self.guesses: OrderedDict[str, ReferenceFilm] = OrderedDict()  # by label, bounded

    @classmethod
    def from_film_db(cls, db_path: Path, catalog_genres) -> ReferenceFilms:
        rows = film_table_rows(db_path, 'SELECT Title, Year, Genre, Director, "Cast" FROM omdb '
                                        "ORDER BY COALESCE(imdbVotes, 0)")
        films = {}
        for title, year, genre, director, cast in rows:  # ascending votes: the most voted is written last
            if not title:
                continue
            mapped = []
            for g in (genre or "").split(","):
                g = GENRE_MAP.get(g.strip(), g.strip())
                if g in catalog_genres and g not in mapped:
                    mapped.append(g)
            films[title_key(title)] = ReferenceFilm(title, int(year) if year else None,
                                                    tuple(mapped), tuple(split_names(director)),
                                                    tuple(split_names(cast, MAX_CAST)))
        return cls(films)

    def lookup(self, span: str) -> ReferenceFilm | None:
        return self.films.get(title_key(span))

    def by_label(self, label: str) -> ReferenceFilm | None:
        """The film a state's ``outside`` entry names (its ``label``)."""
        return self.labels.get(label) or self.guesses.get(label)

    def remember(self, film: ReferenceFilm) -> None:
        """Keep a guessed film so later turns' retrieval finds it by label (the most
        recent ``MAX_GUESSES``; a state naming an older one keeps its genres wish)."""
        self.guesses[film.label] = film
        self.guesses.move_to_end(film.label)
        while len(self.guesses) > MAX_GUESSES:
            self.guesses.popitem(last=False)


def named_titles(text: str) -> list[tuple[int, int, str]]:
    """Spans that stand where a title would: after "like", "loved", ... or in quotes,
    up to the end of the clause (at most ``MAX_WORDS`` words).

    >>> [s for _, _, s in named_titles('something like The Matrix, but from the 90s')]
    ['The Matrix']
    >>> [s for _, _, s in named_titles('I loved "Inception" and Up')]
    ['Inception']
    """
    spans = []
    for m in CUES.finditer(text):
        rest = text[m.end():]
        if rest[:1] in "\"“":
            continue  # quoted: taken whole below
        stop = STOP.search(rest)
        span = rest[: stop.start()] if stop else rest
        words = span.split()[:MAX_WORDS]
        if words:
            span = " ".join(words).strip("\"“”'")
            spans.append((m.end(), m.end() + len(span), span))
    for m in re.finditer(r"[\"“]([^\"“”]{2,60})[\"”]", text):
        spans.append((m.start(1), m.end(1), m.group(1)))
    return sorted(spans)


def find_outside(text: str, reference: ReferenceFilms | None, looks_like_title=None
                 ) -> tuple[list[ReferenceFilm], list[str]]:
    """Titles named in ``text`` (already stripped of catalog titles) that the reference
    table knows, and capitalized ones it does not (named back to the user as not found).
    The longest prefix of each span that is a known title wins ("The Matrix again"); what
    follows it after "and", "&" or "or" is read as the next title ("Inception and
    Interstellar" names two).

    >>> refs = ReferenceFilms({title_key("Inception"): ReferenceFilm("Inception", 2010, ())})
    >>> known, unknown = find_outside("I loved Inception and Zorblax Returns", refs)
    >>> [f.title for f in known], unknown
    (['Inception'], ['Zorblax Returns'])
    """
    known, unknown = [], []
    for _, _, span in named_titles(text):
        words = span.split()
        while words:
            hit, n = _longest_known(words, reference, looks_like_title)
            if hit:
                if hit not in known:
                    known.append(hit)
            elif words[0][:1].isupper():
                n = _next_joint(words) or len(words)
                part = " ".join(words[:n])
                if looks_like_title is None or looks_like_title(part):
                    unknown.append(part)
            else:
                break
            words = words[n:]
            if not (words and words[0].lower() in JOINTS and len(words) > 1
                    and words[1][:1].isupper()):
                break
            words = words[1:]
    return known, unknown


JOINTS = ("and", "&", "or")


def _longest_known(words: list[str], reference, looks_like_title) -> tuple:
    """The reference film the longest prefix of ``words`` names, and that prefix's length."""
    if reference is None:
        return None, 0
    for n in range(len(words), 0, -1):
        prefix = " ".join(words[:n])
        if looks_like_title is None or looks_like_title(prefix):
            hit = reference.lookup(prefix)
            if hit:
                return hit, n
    return None, 0


def _next_joint(words: list[str]) -> int:
    """Where the first "and"/"&"/"or" is (0: none)."""
    return next((k for k in range(1, len(words)) if words[k].lower() in JOINTS), 0)
