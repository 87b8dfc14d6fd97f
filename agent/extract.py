"""LLM state extraction: the model fills a JSON form about one message, under a JSON
schema the backend enforces (xgrammar in-process, structured outputs on vLLM).

The deterministic parser (``agent.state.parse_message``) stays the authority:
the model only adds what the parser left open, and only values that check out
(genres from the catalog's list, titles that resolve to catalog items named in
the message, plausible years). In ``auto`` mode the model is asked only when the
message has words the parser did not map to anything (``parsed.query``), so a
turn the rules fully understand costs no generation.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

from agent.datasets import ML_GENRES
from agent.enrich import title_key
from agent.errors import BackendError
from agent.state import ParsedMessage
from prompts import load_prompt

log = logging.getLogger(__name__)
STATE_PROMPTS = ("state_system", "state_user")
MODES = ("off", "auto", "always")
MAX_TOKENS = 256  # the longest form the schema allows fits (4 titles of 40 characters)


def state_schema(genres=ML_GENRES) -> dict:
    """The JSON schema the model's answer must follow."""
    year = {"anyOf": [{"type": "integer", "minimum": 1900, "maximum": 2030}, {"type": "null"}]}
    titles = {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 2}
    # No "uniqueItems": vLLM's grammar rejects it; duplicates are dropped when parsing.
    genre_list = {"type": "array", "items": {"enum": list(genres)}, "maxItems": 3}
    fields = {"liked_titles": titles, "disliked_titles": titles, "genres": genre_list,
              "excluded_genres": genre_list, "year_min": year, "year_max": year}
    return {"type": "object", "properties": fields, "required": list(fields),
            "additionalProperties": False}


def extraction_messages(text: str) -> list[dict]:
    return [{"role": "system", "content": load_prompt("state_system").text.strip()},
            {"role": "user", "content": load_prompt("state_user").render(message=text).strip()}]


def parse_extraction(raw: str, text: str, title_index, genres=ML_GENRES) -> ParsedMessage:
    """The model's form as a ``ParsedMessage``, keeping only values that check out.

    >>> p = parse_extraction('{"genres": ["Horror", "Sports"], "year_min": 1990, '
    ...                      '"year_max": 1850, "liked_titles": []}', "spooky 90s", None)
    >>> p.genres, p.year_min, p.year_max
    (('Horror',), 1990, None)
    >>> parse_extraction("not json", "x", None) == ParsedMessage()
    True
    """
    try:
        form = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        log.info("state extraction: not JSON: %r", str(raw)[:200])
        return ParsedMessage()
    if not isinstance(form, dict):
        return ParsedMessage()

    def genre_list(key):
        return tuple(dict.fromkeys(g for g in form.get(key) or [] if g in genres))

    def year(key):
        y = form.get(key)
        return y if isinstance(y, int) and 1900 <= y <= 2030 else None

    def titles(key):
        return tuple(dict.fromkeys(i for t in form.get(key) or [] if isinstance(t, str)
                                   for i in [_named_in(t, text, title_index)] if i is not None))

    wanted, excluded = genre_list("genres"), genre_list("excluded_genres")
    lo, hi = year("year_min"), year("year_max")
    if lo is not None and hi is not None and lo > hi:
        lo = hi = None
    return ParsedMessage(liked=titles("liked_titles"), disliked=titles("disliked_titles"),
                         genres=tuple(g for g in wanted if g not in excluded),
                         excluded_genres=excluded, year_min=lo, year_max=hi)


def _named_in(title: str, text: str, title_index) -> int | None:
    """The catalog item ``title`` names, if the message names it too (the model may
    only pick out titles the user wrote, never add one)."""
    if title_index is None:
        return None
    key = title_key(title)
    ids = title_index.by_key.get(key) or [m.item_id for m in title_index.find(title)]
    words = set(re.findall(r"[a-z0-9]+", key))
    said = set(re.findall(r"[a-z0-9]+", title_key(text)))
    return ids[0] if ids and words and words <= said else None


def combine(rules: ParsedMessage, model: ParsedMessage) -> ParsedMessage:
    """The rules' parse plus what the model adds where the rules found nothing of that
    kind. A title or genre the rules placed keeps the rules' polarity.

    >>> rules = ParsedMessage(liked=(1,), genres=("Comedy",), query="spooky")
    >>> model = ParsedMessage(liked=(2,), disliked=(1,), genres=("Horror",),
    ...                       excluded_genres=("Comedy", "Romance"), year_min=1990, year_max=1999)
    >>> c = combine(rules, model)
    >>> c.liked, c.disliked, c.genres, c.excluded_genres, (c.year_min, c.year_max)
    ((1, 2), (), ('Comedy', 'Horror'), ('Romance',), (1990, 1999))
    """
    placed_titles = set(rules.liked) | set(rules.disliked)
    placed_genres = set(rules.genres) | set(rules.excluded_genres)
    liked = rules.liked + tuple(i for i in model.liked if i not in placed_titles)
    disliked = rules.disliked + tuple(i for i in model.disliked
                                      if i not in placed_titles and i not in liked)
    genres = rules.genres + tuple(g for g in model.genres if g not in placed_genres)
    excluded = rules.excluded_genres + tuple(g for g in model.excluded_genres
                                             if g not in placed_genres and g not in genres)
    lo, hi = rules.year_min, rules.year_max
    if lo is None and hi is None and not (rules.any_year or rules.older or rules.newer):
        lo, hi = model.year_min, model.year_max
    return replace(rules, liked=tuple(dict.fromkeys(liked)),
                   disliked=tuple(dict.fromkeys(disliked)), genres=genres,
                   excluded_genres=excluded, year_min=lo, year_max=hi)


class StateExtractor:
    """Refines the rules' parse of a message with the model's JSON form.

    Args:
        backend: a ``ChatBackend`` with ``generate_json``.
        title_index: resolves the titles the model names.
        mode: ``"auto"`` (ask only when the rules left words unexplained),
            ``"always"``, or ``"off"``.
    """

    def __init__(self, backend, title_index, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"state extraction mode must be one of {MODES}, not {mode!r}")
        self.backend, self.title_index, self.mode = backend, title_index, mode
        self.schema = state_schema()

    def wanted(self, parsed: ParsedMessage) -> bool:
        return self.mode == "always" or (self.mode == "auto" and bool(parsed.query))

    def refine(self, text: str, parsed: ParsedMessage) -> ParsedMessage:
        """``parsed`` with the model's additions; ``parsed`` itself when the model is not
        needed or fails (a failing backend never breaks the turn)."""
        if not self.wanted(parsed):
            return parsed
        try:
            raw = self.backend.generate_json(extraction_messages(text), self.schema, MAX_TOKENS)
        except BackendError as e:  # backend boundary: the rules' parse stands; a bug raises
            log.warning("state extraction failed, using the rules alone: %s", e)
            return parsed
        return combine(parsed, parse_extraction(raw, text, self.title_index))
