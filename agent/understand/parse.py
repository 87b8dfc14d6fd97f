"""Parse one user message, deterministically (``parse_message``).

The parser finds catalog titles (liked or disliked), genres (wanted or excluded),
release-year bounds, people, references to earlier picks and tail cues. The state is
immutable: ``agent.understand.state.merge`` builds the next turn's state from the
previous one and the parsed message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from agent.domain.text import title_key
from agent.understand.linking import Mention, TitleIndex

MAX_MESSAGE_CHARS = 2000

def genre_words() -> dict[str, tuple[str, ...]]:
    """Each genre's English words ("gory": Horror), from the vocabulary file."""
    from agent.understand.vocabulary import load_vocabulary

    return load_vocabulary().genre_words

NEGATIONS = re.compile(
    r"\b(no|not|nothing|without|avoid|except|never|less|hate|hated|dislike|disliked|"
    r"don't|dont|do not|didn't|didnt|did not|isn't|wasn't|can't stand|anything but|"
    r"skip|none of|no more)\b[^,.;!?]*$", re.I)
# "but" ends a clause ("like Alien but less gory") except in "anything but", "all but".
CLAUSE_BREAK = re.compile(r"[,.;!?]|(?<!anything )(?<!everything )(?<!all )\bbut\b|"
                          r"\bthough\b|\bhowever\b|\bwhile\b", re.I)

# Words that say nothing about taste; what is left of a message after removing
# them, titles, genres and years is its semantic query ("mind-bending heist").
FILLER = set("""
a an the and or but if then so to of in on at for from with without by about as into like
i i'm im me my we us our you your it its it's this that these those there here is are was
were be been being am do does did done have has had can could would should will shall may
might must please thanks thank hi hello hey ok okay yes no not nothing any anything some
something someone one ones more less most very really just also too again still even
want wanted wanna need looking look recommend recommendation recommendations suggest
suggestion suggestions give show find tell watch watching watched see seen saw movie movies
film films flick flicks pick picks good great nice best fine cool what which who how when
where why all other else kind sort type tonight today now time loved love liked enjoyed
enjoy hate hated dislike disliked prefer rather maybe perhaps decade decades year years
old older new newer recent released release between before after since until era
hidden gem gems lesser little known obscure underrated popular mainstream niche
hmm hm hmmm um umm uh erm meh idk lol haha well sure alright entertain bored
think guess mind feel feeling mood similar alike
under over above below up than hour hours minute minutes min mins half long longer shorter
""".split())

# Asking for the long tail or for the familiar sets the re-ranker's tail_boost.
TAIL_CUES = (
    (re.compile(r"\b(hidden gems?|lesser[- ]known|little[- ]known|obscure|under(-| )?rated|"
                r"under the radar|off the beaten|not (so |too |very )?(popular|mainstream|"
                r"well[- ]known)|less (popular|mainstream|known)|niche|deep cuts?)\b", re.I), 0.7),
    (re.compile(r"\b(popular|mainstream|blockbusters?|crowd[- ]pleasers?|well[- ]known|"
                r"everyone (has seen|knows)|classics?)\b", re.I), 0.0),
)

DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950,
                "sixties": 1960, "seventies": 1970, "eighties": 1980, "nineties": 1990}


@dataclass(frozen=True)
class ParsedMessage:
    liked: tuple[int, ...] = ()
    disliked: tuple[int, ...] = ()
    genres: tuple[str, ...] = ()
    excluded_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    query: str = ""
    mentions: tuple[Mention, ...] = ()
    tail_boost: float | None = None
    # References to the last answer's picks, as 0-based positions: liked / disliked.
    liked_refs: tuple[int, ...] = ()
    disliked_refs: tuple[int, ...] = ()
    older: bool = False  # "something older": before the last picks
    newer: bool = False
    any_year: bool = False  # "any decade is fine": drop the year bounds
    any_genre: bool = False  # "any genre": drop wanted and excluded genres
    only_genres: bool = False  # "just westerns then": these genres replace the earlier ones
    genre_or: bool = False  # "comedy or drama"
    people: tuple[str, ...] = ()
    moods: tuple[str, ...] = ()
    outside: tuple = ()  # ReferenceFilm (agent.domain.movielens): titles outside the catalog
    not_found: tuple[str, ...] = ()
    well_liked: bool = False
    off_topic: bool = False
    excluded_people: tuple[str, ...] = ()  # "nothing by Quentin Tarantino"
    facets: object = None  # agent.understand.facets.FacetRequest: a catalog's own facets


ORDINALS = {"first": 0, "1st": 0, "one": 0, "1": 0, "second": 1, "2nd": 1, "two": 1, "2": 1,
            "third": 2, "3rd": 2, "three": 2, "3": 2, "fourth": 3, "4th": 3, "four": 3, "4": 3,
            "fifth": 4, "5th": 4, "five": 4, "5": 4, "last": -1}
REFERENCE = re.compile(
    r"\b(?:the\s+)?(first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th|last)\s+"
    r"(?:one|pick|movie|film|suggestion)s?\b|\bnumber\s+(one|two|three|four|five|[1-5])\b"
    r"|#([1-5])\b|\b(that|this)\s+one\b", re.I)
OLDER = re.compile(r"\b(older|earlier|less recent)\b(?!\s+than\s+\d)", re.I)
NEWER = re.compile(r"\b(newer|more recent|later)\b(?!\s+than\s+\d)", re.I)
ANY_YEAR = re.compile(r"\b(any (decade|year|era)|whenever|(doesn't|does not|don't|do not) "
                      r"(matter|care) when|no matter when)\b", re.I)
ANY_GENRE = re.compile(r"\bany (genre|kind|type)\b", re.I)
ONLY = re.compile(r"\b(just|only|simply)\b", re.I)


def _references(text: str) -> tuple[list[int], list[int]]:
    """Positions in the last answer the message points at, split by negation:
    "more like the second one" -> ([1], []); "not that one" -> ([], [0])."""
    liked, disliked = [], []
    for m in REFERENCE.finditer(text):
        word = (m[1] or m[2] or m[3] or "one").lower()
        pos = 0 if m[4] else ORDINALS[word]
        (disliked if negated(text, m.start()) else liked).append(pos)
    return liked, disliked


def negated(text: str, pos: int) -> bool:
    """True when a negation cue comes before ``pos`` within the same clause."""
    before = text[:pos]
    breaks = list(CLAUSE_BREAK.finditer(before))
    clause = before[breaks[-1].end():] if breaks else before
    return bool(NEGATIONS.search(clause))


def _genres(text: str) -> tuple[list[str], list[str]]:
    from agent.understand.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    other_languages = vocabulary.translated_genre_words
    wanted, excluded = [], []
    for genre, words in vocabulary.genre_words.items():
        for w in (*words, *other_languages.get(genre, ())):
            for m in re.finditer(r"(?<![\w-])" + re.escape(w) + r"(?![\w-])", text, re.I):
                (excluded if negated(text, m.start()) else wanted).append(genre)
    excluded = list(dict.fromkeys(excluded))
    wanted = [g for g in dict.fromkeys(wanted) if g not in excluded]
    return wanted, excluded


def _decade(token: str) -> int | None:
    token = token.lower().lstrip("'’")
    m = re.fullmatch(r"(19|20)?(\d)0[’']?s", token)
    if m:
        if m[1]:
            return int(m[1] + m[2] + "0")
        d = int(m[2])
        return 2000 + d * 10 if d <= 1 else 1900 + d * 10
    return DECADE_WORDS.get(token)


def _years(text: str) -> tuple[int | None, int | None]:
    t = text.lower()
    m = re.search(r"\bbetween\s+(\d{4})\s+and\s+(\d{4})\b", t) or \
        re.search(r"\b(\d{4})\s*(?:-|–|to)\s*(\d{4})\b", t)
    if m:
        a, b = sorted((int(m[1]), int(m[2])))
        return a, b
    lo = hi = None
    # Other languages' decades: "années 90", "años 80", "anni 70", "90er".
    t = re.sub(r"\b(?:ann[ée]es|a[ñn]os|anni|jahre|los|les|die|the)\s+(?:19)?(\d)0\b",
               r" \g<1>0s ", t)
    t = re.sub(r"\b(?:19)?(\d)0ern?\b", r" \g<1>0s ", t)
    # When a story is set is not when the film was made: "a war film set in the 1940s".
    t = re.sub(r"\b(?:set|takes? place|taking place)\s+(?:in|during)\s+(?:the\s+)?"
               r"(?:(?:early|late|mid)[\s-]+)?(?:\d{4}s?|'?\d0s|\w+ies)\b", " ", t)
    for m in re.finditer(r"(?<![\w])(?:the\s+)?((?:19|20)?\d0[’']?s|'\d0s|’\d0s|"
                         + "|".join(DECADE_WORDS) + r")(?![\w])", t):
        d = _decade(m.group(1))
        if d is not None:
            lo = d if lo is None else min(lo, d)
            hi = d + 9 if hi is None else max(hi, d + 9)
    for m in re.finditer(r"\b(before|earlier than|older than|prior to|pre|until|up to|through)"
                         r"[\s-]+(\d{4})\b", t):
        y = int(m[2])
        if NOTHING.search(t[:m.start()]):  # "nothing before 1980": 1980 or later
            lo = y
            continue
        hi = y - 1 if m[1] in ("before", "earlier than", "older than", "prior to", "pre") else y
    for m in re.finditer(r"\b(after|since|newer than|later than|post|from)[\s-]+(\d{4})\b", t):
        y = int(m[2])
        if NOTHING.search(t[:m.start()]):  # "nothing newer than 1985": 1985 or earlier
            hi = y
            continue
        if m[1] == "from" and not re.search(r"\bfrom[\s-]+\d{4}\s*(on|onwards|onward)\b", t):
            lo = hi = y  # "from 1994" = released in 1994
        else:
            lo = y + 1 if m[1] in ("after", "newer than", "later than", "post") else y
    if lo is None and hi is None:
        # "in 1994", or a year used as an adjective: "a 1994 comedy", "1994 films".
        m = re.search(r"\bin\s+(19\d\d|20\d\d)\b", t) or re.search(
            r"\b(19\d\d|20[0-2]\d)\s+(?:" + "|".join(_year_nouns()) + r")\b", t)
        if m:
            lo = hi = int(m[1])
    return lo, hi


@lru_cache(maxsize=1)
def _year_nouns() -> list[str]:
    """Nouns a bare year can qualify ("a 1994 comedy"): genre words and film words."""
    return sorted({re.escape(w) for ws in genre_words().values() for w in ws}
                  | {"movie", "movies", "film", "films", "flick", "release", "releases"},
                  key=len, reverse=True)
NOTHING = re.compile(r"\b(nothing|no films?|no movies?|not anything)\b(?:\s+\w+){0,2}\s*$")


FILM_ROLES = frozenset({"genre", "year", "director", "cast"})


def parse_message(text: str, index: TitleIndex, people=None, reference=None, facets=None,
                  roles: frozenset = FILM_ROLES) -> ParsedMessage:
    """Parse one message. People and titles are found first and blanked out before the
    mood, genre and year rules run, so "2001: A Space Odyssey" is a title, not a year.

    Args:
        people: an ``agent.understand.people.PeopleIndex`` (directors and cast), or None.
        reference: an ``agent.domain.movielens.reference.ReferenceFilms`` for titles outside
            the catalog.
        facets: an ``agent.understand.facets.FacetIndex`` for the catalog's own facets.
        roles: the film roles the catalog's schema has facets for: the genre rules (genre
            words, moods, concepts) run only with "genre", the year rules only with "year".
    """
    from agent.understand.vocabulary import era_years, find_phrases, load_vocabulary

    vocab, rest = load_vocabulary(), _Blanked(text)
    named_people, unwanted_people, liked, disliked, mentions, outside, not_found = \
        _names(text, rest, index, people, reference)
    asked = facets.parse(str(rest)) if facets is not None else None
    if asked is not None:  # "nothing too long": the vocabulary's words for a range
        asked, spans = facets.with_phrases(asked, text, str(rest), vocab)
        for a, b in spans:
            rest.blank(a, b)
    moods, excluded = _moods(text, rest, vocab) if "genre" in roles else ([], [])
    rest_text = str(rest)
    wanted, excluded_genres = _genres(rest_text) if "genre" in roles else ([], [])
    excluded += [g for g in excluded_genres if g not in excluded]
    wanted = [g for g in wanted if g not in excluded]
    lo, hi = _years(rest_text) if "year" in roles else (None, None)
    liked_refs, disliked_refs = _references(rest_text)
    eras = era_years(text, rest_text, vocab.eras if "year" in roles else {})
    if eras[0] and lo is None and hi is None:  # an explicit year or decade wins
        lo, hi = eras[1]
    vague = find_phrases(rest_text, vocab.vague)  # "surprise me" is no search word
    well_liked = any(not negated(text, m.start()) for m in vague)
    for a, b in eras[0] + [m.span() for m in vague]:  # "old classic": an era, a standing
        rest.blank(a, b)
    rest_text = str(rest)
    query = content_words(REFERENCE.sub(" ", _without_negated(rest_text)))
    genre_or = len(wanted) >= 2 and bool(re.search(r"\bor\b|\beither\b", rest_text, re.I))
    taste = (liked or disliked or wanted or excluded or named_people or unwanted_people
             or moods or outside or liked_refs or disliked_refs or asked)
    asks_else = find_phrases(text, vocab.off_topic) or ARITHMETIC.search(text)
    # A year alone does not make a question about films: "who won the world cup in 1998?"
    off_topic = bool(not taste and asks_else and not find_phrases(text, vocab.film_words))
    if off_topic:
        lo = hi = None
    return ParsedMessage(tuple(dict.fromkeys(liked)), tuple(dict.fromkeys(disliked)),
                         tuple(wanted), tuple(excluded), lo, hi,
                         "" if off_topic else query, tuple(mentions),
                         tail_preference(rest_text), tuple(liked_refs), tuple(disliked_refs),
                         bool(OLDER.search(rest_text)), bool(NEWER.search(rest_text)),
                         bool(ANY_YEAR.search(rest_text)), bool(ANY_GENRE.search(rest_text)),
                         bool(wanted and ONLY.search(rest_text)), genre_or,
                         tuple(dict.fromkeys(named_people)), tuple(moods),
                         tuple(outside), tuple(not_found), well_liked, off_topic,
                         tuple(dict.fromkeys(unwanted_people)), asked)


class _Blanked:
    """The message with what the rules have read so far blanked out (same length, so
    positions in it are positions in the message)."""

    def __init__(self, text: str):
        self.chars = list(text)

    def blank(self, start: int, end: int) -> None:
        self.chars[start:end] = " " * (end - start)

    def __str__(self) -> str:
        return "".join(self.chars)


def _names(text: str, rest: _Blanked, index: TitleIndex, people, reference):
    """People, catalog titles, then titles outside the catalog, each blanked once read: (people
    named, excluded, liked ids, disliked ids, title mentions, outside films, unknown titles)."""
    from agent.domain.movielens.reference import find_outside

    named, unwanted = [], []
    if people is not None:
        titles = tuple((m.start, m.end) for m in index.find(text))
        for pm in people.find(text, is_title=lambda span: bool(index.by_key.get(title_key(span))),
                              titles=titles):
            (unwanted if negated(text, pm.start) else named).append(pm.name)
            rest.blank(pm.start, pm.end)
    mentions = index.find(str(rest))
    liked, disliked = [], []
    for m in mentions:
        (disliked if negated(text, m.start) else liked).append(m.item_id)
        rest.blank(m.start, m.end)
    outside, not_found = find_outside(str(rest), reference, _looks_like_title)
    for name in [f.title for f in outside] + not_found:
        at = re.search(re.escape(name), str(rest), re.I)  # "the matrix" names The Matrix
        if at:
            rest.blank(at.start(), at.end())
    return named, unwanted, liked, disliked, mentions, outside, not_found


def _moods(text: str, rest: _Blanked, vocab) -> tuple[list[str], list[str]]:
    """The vocabulary's moods asked for, and the genres of negated concepts ("no
    violence"), each phrase blanked once read."""
    from agent.understand.vocabulary import find_phrases

    moods, excluded = [], []
    # Negated concepts first: "nothing scary" excludes horror, though "scary" is a mood;
    # a longer mood phrase holding the word wins ("nothing heavy" is relaxing).
    phrases = [m.span() for mood in vocab.moods.values()
               for m in find_phrases(str(rest), mood.words)]
    for words, genres in vocab.concepts.values():
        for m in find_phrases(str(rest), words):
            longer = any(a <= m.start() and m.end() <= b and b - a > m.end() - m.start()
                         for a, b in phrases)
            if negated(text, m.start()) and not longer:  # "no violence": exclude its genres
                excluded += [g for g in genres if g not in excluded]
                rest.blank(m.start(), m.end())
    for name, mood in vocab.moods.items():
        for m in find_phrases(str(rest), mood.words):
            if not negated(text, m.start()) and name not in moods:
                moods.append(name)
            rest.blank(m.start(), m.end())
    return moods, excluded


ARITHMETIC = re.compile(r"\d+\s*(?:times|plus|minus|x|\*|\+|/|divided by)\s*\d+", re.I)


def _looks_like_title(span: str) -> bool:
    """Whether a span after "like ..." could be a title rather than a description
    ("like The Matrix", "like the matrix" yes; "like a comedy", "like dark films" no)."""
    from agent.understand.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    words = re.findall(r"[\w'’-]+", span.lower())
    mood_words = {w for m in vocab.moods.values() for phrase in m.words for w in phrase.split()}
    genre_terms = {w for ws in genre_words().values() for phrase in ws for w in phrase.split()}
    content = [w for w in words if w not in FILLER and w not in genre_terms
               and w not in mood_words]
    if not content:
        return False
    return span[:1].isupper() or span[:1].isdigit() or (len(words) >= 2 and len(content) == len(
        [w for w in words if w not in FILLER]))


def _without_negated(text: str) -> str:
    """``text`` with every negated clause blanked: what a user does not want never
    becomes a search word ("no violence" must not attract violent films)."""
    out, pos = [], 0
    for m in list(CLAUSE_BREAK.finditer(text)) + [None]:
        end = m.start() if m else len(text)
        clause = text[pos:end]
        neg = re.search(NEGATIONS.pattern.replace("[^,.;!?]*$", ""), clause, re.I)
        out.append(clause[: neg.start()] if neg else clause)
        if m:
            out.append(m.group())
            pos = m.end()
    return "".join(out)


def tail_preference(text: str) -> float | None:
    """0.7 when the user asks for lesser-known films, 0 for popular ones, else None.

    >>> [tail_preference(t) for t in ("some hidden gems", "not too mainstream", "a classic", "x")]
    [0.7, 0.7, 0.0, None]
    """
    for pattern, value in TAIL_CUES:  # the long-tail cues first: "not popular" is one
        if pattern.search(text):
            return value
    return None


def content_words(text: str) -> str:
    """The words of ``text`` that carry taste: no filler, genre words, years or decades.

    >>> content_words("I want something mind-bending and twisty from the 90s, no horror")
    'mind-bending twisty'
    """
    genre_phrases = {w for words in genre_words().values() for w in words}
    out = []
    for tok in re.findall(r"[\w'’-]+", text.lower()):
        tok = tok.strip("'’-")
        if not tok or tok in FILLER or tok in genre_phrases or tok in DECADE_WORDS:
            continue
        if re.fullmatch(r"\d+s?|'?\d0s", tok):
            continue
        out.append(tok)
    return " ".join(out)
