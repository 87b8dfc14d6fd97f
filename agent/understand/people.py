"""Find the catalog's people (directors, cast) named in free text: "films with Tom
Hanks", "something by Hitchcock", "tom hankss" (fuzzy)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from agent.domain.movielens.film import credits
from agent.domain.roles import Roles
from agent.types import Item

_WORD = re.compile(r"[\w'’.-]+")
FUZZY_CUTOFF = 88.0
BARE_SURNAME_CREDITS = 6  # a surname alone names someone only this often credited
# Words after a name that make it a request for that person's films: "brad pit movies",
# "a kubrick film", "the coen brothers".
FILM_AFTER = {"film", "films", "movie", "movies", "flick", "flicks", "brothers", "bros"}


def name_key(name: str) -> str:
    """Lower case, no accents or punctuation: ``Pedro Almodóvar`` -> ``pedro almodovar``."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", plain.lower()))


@dataclass(frozen=True)
class PersonMention:
    name: str  # as credited in the catalog
    start: int
    end: int
    exact: bool


def _in_name(tokens, i: int) -> bool:
    """Whether token ``i`` has a capitalized neighbour: part of a longer name or title
    ("Jimmy Stewart", "Saving Private Ryan"), so not a surname on its own."""
    return any(0 <= j < len(tokens) and tokens[j][0][:1].isupper() for j in (i - 1, i + 1))


def _common(word: str) -> bool:
    """An everyday, genre or vocabulary word ("a feel good film" names no Meagan Good,
    "black and white films" no Welker White)."""
    from agent.understand.parse import FILLER, genre_words

    return word in FILLER or any(word in ws for ws in genre_words().values()) \
        or word in _vocabulary_words()


@lru_cache(maxsize=1)
def _vocabulary_words() -> frozenset:
    """Every word of the vocabulary's moods, concepts, eras and range phrases."""
    from agent.understand.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    phrases = [w for m in vocab.moods.values() for w in m.words]
    phrases += [w for words, _ in vocab.concepts.values() for w in words]
    phrases += [w for e in vocab.eras.values() for w in e.words]
    phrases += [w for r in vocab.ranges.values() for w in r.words]
    return frozenset(w for p in phrases for w in re.split(r"[\s-]+", p.lower()) if w)


class PeopleIndex:
    """Every credited person, with the items they made; the most credited wins a tie."""

    def __init__(self, items: list[Item], person_cues=("with", "by", "starring"),
                 roles: Roles | None = None):
        self.films: dict[str, set[int]] = {}
        for it in items:
            for person in credits(it, roles):
                self.films.setdefault(person, set()).add(it.id)
        by_count = sorted(self.films, key=lambda p: -len(self.films[p]))
        self.by_key: dict[str, str] = {}
        self.by_surname: dict[str, str] = {}
        for person in by_count:
            key = name_key(person)
            self.by_key.setdefault(key, person)
            if len(key.split()) >= 2 and len(self.films[person]) >= 2:
                self.by_surname.setdefault(key.split()[-1], person)
        self.keys = [k for k in self.by_key if len(k.split()) >= 2]
        self.cues = {name_key(c) for c in person_cues}

    def items_of(self, names) -> set[int]:
        return set().union(*(self.films.get(n, set()) for n in names)) if names else set()

    def find(self, text: str, is_title=lambda span: False,
             titles: tuple[tuple[int, int], ...] = ()) -> list[PersonMention]:
        """Person mentions in ``text``, longest spans first, in text order. A span that is
        also a catalog title (``is_title``) counts as a person only after a cue such as
        "by" or "with" ("films by Ed Wood" vs "I loved Ed Wood"); a bare surname inside a
        title mention (``titles``: character spans) never does ("Young Frankenstein")."""
        tokens = [(m.group().strip(".'’"), m.start(), m.end()) for m in _WORD.finditer(text)]
        used = [False] * len(tokens)
        found = []
        for n in (3, 2, 1):
            for i in range(len(tokens) - n + 1):
                if any(used[i:i + n]):
                    continue
                cue = i > 0 and (name_key(tokens[i - 1][0]) in self.cues or (
                    i > 1 and name_key(tokens[i - 2][0] + " " + tokens[i - 1][0]) in self.cues))
                after = i + n < len(tokens) and tokens[i + n][0].lower() in FILM_AFTER
                hit = self._match(tokens[i:i + n], cue, after)
                if hit is None:
                    continue
                start, end = tokens[i][1], tokens[i + n - 1][2]
                if not cue and (is_title(text[start:end]) or (n == 1 and (any(
                        a < end and start < b for a, b in titles) or _in_name(tokens, i)))):
                    continue
                found.append(PersonMention(hit[0], start, end, hit[1]))
                used[i:i + n] = [True] * n
        return sorted(found, key=lambda m: m.start)

    def _match(self, span, cue: bool, after: bool = False) -> tuple[str, bool] | None:
        words = [w for w, _, _ in span]
        key = name_key(" ".join(words))
        if not key:
            return None
        capital = all(w[:1].isupper() for w in words)
        if len(words) >= 2:
            if key in self.by_key:
                return self.by_key[key], True
            # Misspelt: capitalized, or lower case where the words around say a person
            # is meant ("starring arnold schwarzenneger", "brad pit movies").
            if len(key) >= 8 and (capital or cue or after):
                from rapidfuzz import fuzz, process

                hit = process.extractOne(key, self.keys, scorer=fuzz.ratio,
                                         score_cutoff=FUZZY_CUTOFF)
                if hit:
                    return self.by_key[hit[0]], False
            return None
        # One word: a surname, capitalized, after a cue ("by Hitchcock"), or without one
        # for someone with many credits ("any Spielberg adventure").
        if len(key) >= 4 and key in self.by_surname and (capital or (after and not _common(key))):
            person = self.by_surname[key]
            if cue or after or len(self.films[person]) >= BARE_SURNAME_CREDITS:
                return person, True
        return None
