"""The request vocabulary (``agent/domain/movielens/vocabulary.json``): moods, concepts,
genre words (English and translated), eras, range and value phrases, vague and off-topic
cues. Loaded once, on first use, never at
import."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# The MovieLens vocabulary; a catalog schema will name its own.
VOCABULARY_FILE = Path(__file__).parents[1] / "domain" / "movielens" / "vocabulary.json"


@dataclass(frozen=True)
class Mood:
    name: str
    words: tuple[str, ...]
    any_genres: tuple[str, ...]  # an item fits when it has at least one of these
    exclude_genres: tuple[str, ...]


@dataclass(frozen=True)
class Era:
    name: str
    words: tuple[str, ...]
    year_min: int | None  # the years the phrase means ("black and white": up to 1965)
    year_max: int | None


@dataclass(frozen=True)
class RangeWords:
    name: str
    words: tuple[str, ...]
    field: str  # a range facet of the schema: "nothing too long" bounds the running time
    at_least: float | None
    at_most: float | None


@dataclass(frozen=True)
class ValueWords:
    name: str
    words: tuple[str, ...]
    field: str  # a category facet: "a foreign film" asks for any language but English
    other_than: tuple[str, ...]


@dataclass(frozen=True)
class Vocabulary:
    moods: dict[str, Mood]
    concepts: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # name -> (words, genres)
    genre_words: dict[str, tuple[str, ...]]  # genre -> its English words ("gory": Horror)
    translated_genre_words: dict[str, tuple[str, ...]]  # other languages' ("comédie")
    vague: tuple[str, ...]
    film_words: tuple[str, ...]
    off_topic: tuple[str, ...]
    person_cues: tuple[str, ...]
    eras: dict[str, Era]
    ranges: dict[str, RangeWords]
    values: dict[str, ValueWords]


@lru_cache(maxsize=4)
def load_vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    """Read and check the vocabulary file (an unknown key is an error, not ignored)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    known = {"_about", "moods", "concepts", "genre_words", "genre_words_translated", "vague",
             "film_words", "off_topic", "person_cues", "eras", "ranges", "values"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    moods = {name: Mood(name, tuple(m["words"]), tuple(m["any_genres"]),
                        tuple(m.get("exclude_genres", ())))
             for name, m in raw["moods"].items()}
    concepts = {name: (tuple(c["words"]), tuple(c["genres"]))
                for name, c in raw["concepts"].items()}
    eras = {name: Era(name, tuple(e["words"]), e.get("year_min"), e.get("year_max"))
            for name, e in raw.get("eras", {}).items()}
    ranges = {name: RangeWords(name, tuple(r["words"]), r["field"], r.get("at_least"),
                               r.get("at_most"))
              for name, r in raw.get("ranges", {}).items()}
    values = {name: ValueWords(name, tuple(v["words"]), v["field"], tuple(v["other_than"]))
              for name, v in raw.get("values", {}).items()}
    return Vocabulary(moods, concepts, {g: tuple(w) for g, w in raw["genre_words"].items()},
                      {g: tuple(w) for g, w in raw.get("genre_words_translated", {}).items()},
                      tuple(raw["vague"]), tuple(raw["film_words"]), tuple(raw["off_topic"]),
                      tuple(raw["person_cues"]), eras, ranges, values)


def phrase_pattern(words) -> re.Pattern:
    """One regex matching any of ``words`` as whole words (longest first), any case.

    >>> bool(phrase_pattern(["date night", "cozy"]).search("a Date Night pick"))
    True
    >>> bool(phrase_pattern(["fun"]).search("something funny"))
    False
    """
    alternatives = sorted({w for w in words if w}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(w) for w in alternatives)
                      + r")(?![\w-])", re.I)


@lru_cache(maxsize=64)
def _cached_pattern(words: tuple[str, ...]) -> re.Pattern:
    return phrase_pattern(words)


def find_phrases(text: str, words: tuple[str, ...]) -> list[re.Match]:
    """Matches of any of ``words`` in ``text`` (whole words, any case), in text order."""
    return list(_cached_pattern(words).finditer(text)) if words else []


def era_years(text: str, rest: str, eras: dict[str, Era]) -> tuple[list, tuple]:
    """The spans of ``eras``' phrases in ``rest`` (``text`` with titles and people blanked)
    and the release years the first one means: its own, or the years after it when negated
    ("nothing black and white": 1966 on)."""
    from agent.understand.parse import negated

    found = sorted(((m.span(), era) for era in eras.values()
                    for m in find_phrases(rest, era.words)), key=lambda e: e[0])
    if not found:
        return [], (None, None)
    (start, _), era = found[0]
    if negated(text, start):
        return [s for s, _ in found], (None if era.year_max is None else era.year_max + 1, None)
    return [s for s, _ in found], (era.year_min, era.year_max)
