"""LLM state extraction: the model fills a JSON form about one message, under a JSON
schema the backend enforces (xgrammar in-process, structured outputs on vLLM).

The deterministic parser (``agent.understand.parse.parse_message``) stays the authority:
the model only adds what the parser left open, and only values that check out
(genres from the catalog's list, moods from the vocabulary, titles and people
that resolve to the catalog and that the message itself names, plausible years).
In ``auto`` mode the model is asked only when the message has words the parser
did not map to anything (``parsed.query``), so a turn the rules fully understand
costs no generation.

Every field is optional: the model writes only what the message says, so a plain
request costs a handful of tokens, not the whole form. Titles and people are
copied as the user wrote them (misspelled, lower case) and resolved here, so the
model never has to know the catalog. A state adapter (``tailor finetune --task
state``) is trained on exactly this form.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

from agent.domain.text import title_key
from agent.domain.movielens.loaders import ML_GENRES
from agent.errors import AssetError, BackendError
from agent.understand.parse import ParsedMessage
from prompts import load_prompt

log = logging.getLogger(__name__)
STATE_PROMPTS = ("state_system", "state_user")
MODES = ("off", "auto", "always")
MAX_TOKENS = 200  # the longest form the schema allows (3+2 titles of 60 characters, ...)
FIELDS = ("liked_titles", "disliked_titles", "people", "genres", "excluded_genres", "moods",
          "year_min", "year_max")  # the order the model fills them in
TITLE_CUTOFF = 86.0  # rapidfuzz ratio for a misspelled title or name ("forest gump")
STATE_TASK = "state"  # the ``task`` in a state adapter's tailor.json


def state_schema(genres=ML_GENRES, moods=None) -> dict:
    """The JSON schema the model's answer must follow (every field optional, in order).

    ``genres``: the catalog's genre values (a catalog without a genre facet has no genre
    fields); ``moods``: the vocabulary's mood names (None:
    ``agent/domain/movielens/vocabulary.json``).

    >>> list(state_schema(("Shoes", "Bags"), moods=())["properties"])[:4]
    ['liked_titles', 'disliked_titles', 'people', 'genres']
    >>> "genres" in state_schema((), moods=())["properties"]
    False
    """
    if moods is None:
        from agent.understand.vocabulary import load_vocabulary

        moods = list(load_vocabulary().moods)
    year = {"type": "integer", "minimum": 1900, "maximum": 2030}

    def strings(n, length):
        return {"type": "array", "items": {"type": "string", "maxLength": length}, "maxItems": n}

    def choices(values, n):
        # No "uniqueItems": vLLM's grammar rejects it; duplicates are dropped when parsing.
        return {"type": "array", "items": {"enum": list(values)}, "maxItems": n}

    props = {"liked_titles": strings(3, 60), "disliked_titles": strings(2, 60),
             "people": strings(2, 40), "genres": choices(genres, 3),
             "excluded_genres": choices(genres, 5), "moods": choices(moods, 2),
             "year_min": year, "year_max": year}
    empty = {k for k, v in props.items() if v.get("items", {}).get("enum") == []}
    return {"type": "object", "properties": {k: props[k] for k in FIELDS if k not in empty},
            "additionalProperties": False}


def form_text(form: dict) -> str:
    """A form as the grammar writes it (schema order, ``", "``/``": "``, raw UTF-8): the
    exact text a state adapter is trained to produce.

    >>> form_text({"year_min": 1980, "genres": ["Comedy"], "people": []})
    '{"genres": ["Comedy"], "year_min": 1980}'
    """
    return json.dumps({k: form[k] for k in FIELDS if form.get(k) not in (None, [], ())},
                      ensure_ascii=False)


def extraction_messages(text: str) -> list[dict]:
    return [{"role": "system", "content": load_prompt("state_system").text.strip()},
            {"role": "user", "content": load_prompt("state_user").render(message=text).strip()}]


def parse_extraction(raw: str, text: str, title_index, genres=ML_GENRES, people=None,
                     reference=None, moods=None) -> ParsedMessage:
    """The model's form as a ``ParsedMessage``, keeping only values that check out.

    Args:
        people: an ``agent.understand.people.PeopleIndex`` (None: people are dropped).
        reference: an ``agent.domain.movielens.reference.ReferenceFilms``: a title the
            catalog lacks but the table knows becomes an ``outside`` title.
        moods: the mood names allowed (None: the vocabulary's).

    >>> p = parse_extraction('{"genres": ["Horror", "Sports"], "year_min": 1990, '
    ...                      '"year_max": 1850, "liked_titles": []}', "spooky, after 1989", None)
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
    if moods is None:
        from agent.understand.vocabulary import load_vocabulary

        moods = load_vocabulary().moods

    def listed(key):
        value = form.get(key)
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def year(key):
        y = form.get(key)
        return y if isinstance(y, int) and not isinstance(y, bool) and 1900 <= y <= 2030 else None

    said = _words(text)
    liked, outside = _titles(listed("liked_titles"), said, title_index, reference)
    disliked, _ = _titles(listed("disliked_titles"), said, title_index, None)
    named = tuple(dict.fromkeys(p for s in listed("people")
                                for p in [_person(s, said, people)] if p is not None))
    wanted = tuple(dict.fromkeys(g for g in listed("genres") if g in genres))
    excluded = tuple(dict.fromkeys(g for g in listed("excluded_genres") if g in genres))
    lo, hi = year("year_min"), year("year_max")
    if (lo is not None and hi is not None and lo > hi) or not _years_named(lo, hi, text):
        lo = hi = None
    return ParsedMessage(liked=liked, disliked=tuple(i for i in disliked if i not in liked),
                         genres=tuple(g for g in wanted if g not in excluded),
                         excluded_genres=excluded, year_min=lo, year_max=hi, people=named,
                         moods=tuple(dict.fromkeys(m for m in listed("moods") if m in moods)),
                         outside=outside)


DECADE_WORDS = ("twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties",
                "nineties")


def _years_named(lo, hi, text: str) -> bool:
    """Whether the message names the years: each bound by its year (or the next or the
    previous one: "before 1980" ends in 1979), or a decade's first or last year by the
    decade's digits ("80s", "80er", "années 80") or word ("eighties", misspelled too).
    The model never adds a year the user did not write.

    >>> _years_named(1980, 1989, "de los 80"), _years_named(1980, 1989, "Robocop 3")
    (True, False)
    >>> _years_named(None, 1979, "before 1980"), _years_named(1970, 1989, "70s or eigthies")
    (True, True)
    """
    low = text.lower()
    numbers = set(re.findall(r"\d+", low))

    def decade(d):
        if str(d) in numbers or f"{d % 100:02d}" in numbers:
            return True
        if not 1920 <= d <= 1990:
            return False
        from rapidfuzz import fuzz

        word = DECADE_WORDS[(d // 10) % 10 - 2]
        return any(fuzz.ratio(word, w) >= 70 for w in re.findall(r"[a-z]+", low))

    def named(b):
        return bool({str(b), str(b - 1), str(b + 1)} & numbers) or (
            b % 10 in (0, 9) and decade(b - b % 10))

    return all(named(b) for b in (lo, hi) if b is not None)


def _words(text: str) -> set[str]:
    from agent.understand.people import name_key

    return set(name_key(text.replace("&", " and ")).split())


def _copied(span: str, said: set[str]) -> bool:
    """Whether every word of ``span`` is a word of the message (the model may only pick
    out what the user wrote, misspellings included, never add a name of its own)."""
    words = _words(span) - {"the", "a", "an"}
    return bool(words) and words <= said


def _titles(spans, said, title_index, reference) -> tuple[tuple[int, ...], tuple]:
    """Catalog ids of the spans (exact, then fuzzy), and the reference films of spans
    the catalog lacks but the reference table knows."""
    ids, outside = [], []
    for span in spans:
        if title_index is None or not _copied(span, said):
            continue
        key = title_key(span)
        exact = title_index.by_key.get(key)
        film = reference.lookup(span) if reference is not None and not exact else None
        if exact:
            ids.append(exact[0])
        elif film is not None:
            outside.append(film)
        elif (hit := _fuzzy(key, title_index.keys)) is not None:
            ids.append(title_index.by_key[hit][0])
    outside = {f.label: f for f in outside}
    return tuple(dict.fromkeys(ids)), tuple(outside.values())


def _person(span: str, said: set[str], people) -> str | None:
    """The credited name ``span`` stands for: exact, a surname with several films, or a
    misspelling of a full name."""
    from agent.understand.people import name_key

    if people is None or not _copied(span, said):
        return None
    key = name_key(span)
    if key in people.by_key:
        return people.by_key[key]
    if " " not in key:
        return people.by_surname.get(key)
    hit = _fuzzy(key, people.keys)
    return people.by_key[hit] if hit is not None else None


def _fuzzy(key: str, keys) -> str | None:
    if len(key) < 6:  # a short key is too easy to hit by accident
        return None
    from rapidfuzz import fuzz, process

    hit = process.extractOne(key, keys, scorer=fuzz.ratio, score_cutoff=TITLE_CUTOFF)
    return hit[0] if hit else None


def combine(rules: ParsedMessage, model: ParsedMessage) -> ParsedMessage:
    """The rules' parse, with the model as a fallback: it fills a kind of slot (titles,
    people, years) only where the rules found nothing of that kind, and genres and moods
    only for a message in which the rules found no taste at all (no title, person,
    genre or mood): on the development requests every genre or mood it put beside the
    rules' own was invented. When the rules explained every word of the message
    (``rules.query`` is empty) it adds nothing.

    >>> model = ParsedMessage(liked=(2,), disliked=(1,), genres=("Horror",),
    ...                       excluded_genres=("Horror", "Romance"), year_min=1990, year_max=1999,
    ...                       people=("Tom Hanks",), moods=("cozy",))
    >>> c = combine(ParsedMessage(query="spooky hankss"), model)
    >>> c.liked, c.disliked, c.genres, c.excluded_genres, (c.year_min, c.year_max)
    ((2,), (1,), ('Horror',), ('Romance',), (1990, 1999))
    >>> c.people, c.moods
    (('Tom Hanks',), ('cozy',))
    >>> c = combine(ParsedMessage(liked=(5,), year_min=1980, query="spooky"), model)
    >>> c.liked, c.disliked, c.genres, c.moods, c.people, (c.year_min, c.year_max)
    ((5,), (), (), (), ('Tom Hanks',), (1980, None))
    >>> combine(ParsedMessage(), model) == ParsedMessage()
    True
    """
    if not rules.query:
        return rules
    titles = bool(rules.liked or rules.disliked or rules.outside)
    changes: dict = {}
    if not titles:
        found = {f.title for f in model.outside}
        changes.update(liked=model.liked, outside=model.outside,
                       disliked=tuple(i for i in model.disliked if i not in model.liked),
                       not_found=tuple(t for t in rules.not_found if t not in found))
    if not (rules.people or rules.excluded_people):  # a person the rules saw negated stays so
        changes["people"] = model.people
    if not (titles or rules.people or rules.genres or rules.excluded_genres or rules.moods):
        changes.update(genres=model.genres, moods=model.moods,
                       excluded_genres=tuple(g for g in model.excluded_genres
                                             if g not in model.genres))
    if rules.year_min is None and rules.year_max is None and not (
            rules.any_year or rules.older or rules.newer):
        changes.update(year_min=model.year_min, year_max=model.year_max)
    return replace(rules, **changes)


class StateExtractor:
    """Refines the rules' parse of a message with the model's JSON form.

    Args:
        backend: a ``ChatBackend`` with ``generate_json`` (for a state adapter, a
            backend that loaded it: ``state_backend``).
        title_index: resolves the titles the model names.
        mode: ``"auto"`` (ask only when the rules left words unexplained),
            ``"always"``, or ``"off"``.
        people: an ``agent.understand.people.PeopleIndex`` to resolve the people it names.
        reference: an ``agent.domain.movielens.reference.ReferenceFilms`` for titles outside
            the catalog.
        genres: the catalog's genre values, the only ones the form may name (MovieLens's
            by default; ``()`` for a catalog without a genre facet).
    """

    def __init__(self, backend, title_index, mode: str = "auto", people=None, reference=None,
                 genres=ML_GENRES):
        if mode not in MODES:
            raise ValueError(f"state extraction mode must be one of {MODES}, not {mode!r}")
        self.backend, self.title_index, self.mode = backend, title_index, mode
        self.people, self.reference = people, reference
        self.genres = tuple(genres)
        self.schema = state_schema(self.genres)

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
        return combine(parsed, parse_extraction(raw, text, self.title_index, self.genres,
                                                self.people, self.reference))


def state_backend(settings, name: str):
    """An in-process backend with the state adapter ``name`` (under the adapters dir)
    merged in: a second copy of the small model, so the ranking keeps its own."""
    from agent.build import model_location
    from agent.llm.local import LocalBackend
    from finetune.train import META_FILE

    path = settings.adapters_dir / name
    meta = path / META_FILE
    if not (path / "adapter_config.json").is_file() or not meta.is_file():
        raise AssetError(f"no state adapter named {name!r} in {path}; train one with "
                         "`tailor finetune --task state`")
    task = json.loads(meta.read_text()).get("task")
    if task != STATE_TASK:
        raise AssetError(f"adapter {name!r} was trained for {task or 'ranking'!r}, not state "
                         "extraction")
    return LocalBackend(model_location(settings), threads=settings.threads, adapter_path=str(path))
