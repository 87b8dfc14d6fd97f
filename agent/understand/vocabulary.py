"""The request vocabulary (``agent/domain/movielens/vocabulary.json``): moods, concepts,
other languages' genre words, vague and off-topic cues. Loaded once, on first use, never at
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
class Vocabulary:
    moods: dict[str, Mood]
    concepts: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # name -> (words, genres)
    genre_words: dict[str, tuple[str, ...]]
    vague: tuple[str, ...]
    film_words: tuple[str, ...]
    off_topic: tuple[str, ...]
    person_cues: tuple[str, ...]


@lru_cache(maxsize=4)
def load_vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    """Read and check the vocabulary file (an unknown key is an error, not ignored)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    known = {"_about", "moods", "concepts", "genre_words", "vague", "film_words", "off_topic",
             "person_cues"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    moods = {name: Mood(name, tuple(m["words"]), tuple(m["any_genres"]),
                        tuple(m.get("exclude_genres", ())))
             for name, m in raw["moods"].items()}
    concepts = {name: (tuple(c["words"]), tuple(c["genres"]))
                for name, c in raw["concepts"].items()}
    return Vocabulary(moods, concepts, {g: tuple(w) for g, w in raw["genre_words"].items()},
                      tuple(raw["vague"]), tuple(raw["film_words"]), tuple(raw["off_topic"]),
                      tuple(raw["person_cues"]))


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
