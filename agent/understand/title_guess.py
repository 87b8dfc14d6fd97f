"""What a title outside the catalog and the reference table is like, asked of the LLM.

"Something like <a 2019 film>" names a film neither the catalog nor the reference
film table knows. The model is asked, under a JSON schema that allows only the
catalog's genre names and a plausible year, what the film is; its answer becomes an
``outside`` film like a reference one (an "any of these genres" wish), said back to
the user as a guess. Nothing it writes is ever recommended: the picks stay catalog
items, and a title is never taken from the model.

It is off by default (``TAILOR_TITLE_LLM=on`` turns it on): the embedded 135M model
has almost no film knowledge (``tailor eval --withheld`` measures it against leaving
the title out), so it is for a larger served model.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict

from agent.domain.movielens.reference import ReferenceFilm
from agent.errors import BackendError
from prompts import load_prompt

log = logging.getLogger(__name__)
MAX_TOKENS = 40  # {"genres": [three names], "year": 1999}
MAX_GENRES = 3
CACHE = 1024  # guesses kept per process: a title is asked once


def guess_schema(genres) -> dict:
    """The answer's schema: up to three of the catalog's genres and a year; both optional,
    so a model that does not know the film can answer ``{}``."""
    return {"type": "object",
            "properties": {"genres": {"type": "array", "items": {"enum": sorted(genres)},
                                      "maxItems": MAX_GENRES},
                           "year": {"type": "integer", "minimum": 1890, "maximum": 2030}},
            "additionalProperties": False}


def guess_messages(title: str) -> list[dict]:
    return [{"role": "system", "content": load_prompt("title_system").text.strip()},
            {"role": "user", "content": load_prompt("title_user").render(title=title).strip()}]


def parse_guess(raw: str, title: str, genres) -> ReferenceFilm | None:
    """The model's answer as a guessed film, keeping only catalog genres (deduplicated)
    and a plausible year; None when it names no genre.

    >>> parse_guess('{"genres": ["Drama", "Drama", "Spy"], "year": 2019}', "X", {"Drama"})
    ReferenceFilm(title='X', year=2019, genres=('Drama',), director=(), cast=(), guessed=True)
    >>> parse_guess('{}', "X", {"Drama"}) is None, parse_guess('oops', "X", {"Drama"}) is None
    (True, True)
    """
    try:
        form = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        log.info("title guess: not JSON: %r", str(raw)[:200])
        return None
    if not isinstance(form, dict) or not isinstance(form.get("genres"), list):
        return None
    named = tuple(dict.fromkeys(g for g in form["genres"] if isinstance(g, str) and g in genres))
    year = form.get("year")
    year = year if isinstance(year, int) and not isinstance(year, bool) \
        and 1890 <= year <= 2030 else None
    return ReferenceFilm(title, year, named[:MAX_GENRES], guessed=True) if named else None


class TitleGuesser:
    """Asks ``backend`` (a ``ChatBackend`` with ``generate_json``) what a title is like.

    Args:
        backend: the chat model.
        genres: the catalog's genre names, the only ones an answer may use.
    """

    def __init__(self, backend, genres):
        self.backend, self.genres = backend, frozenset(genres)
        self.schema = guess_schema(self.genres)
        self._cache: OrderedDict[str, ReferenceFilm | None] = OrderedDict()

    def guess(self, title: str) -> ReferenceFilm | None:
        """The guessed film, or None when the model does not know it or fails (a failing
        backend leaves the title named as not found; a bug raises)."""
        key = title.casefold().strip()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            raw = self.backend.generate_json(guess_messages(title), self.schema, MAX_TOKENS)
        except BackendError as e:
            log.warning("title guess failed: %s", e)
            return None
        film = parse_guess(raw, title, self.genres)
        self._cache[key] = film
        if len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return film
