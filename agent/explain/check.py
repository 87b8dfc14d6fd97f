"""Checking free text before it is shown: every title, person, year and genre an
explanation names must be a fact of the pick or of what the user said."""

from __future__ import annotations

import re

from agent.domain.text import title_key
from agent.domain.movielens.loaders import ML_GENRES
from agent.explain.facts import MAX_WORDS, Facts
from agent.types import DialogueState, Item
from agent.understand.parse import genre_words


_CAPITAL_RUN = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:of|the|and|de|von|van|la|le)?\s*[A-Z][\w'’.-]*)+")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_QUOTED = re.compile(r"[\"“”]([^\"“”]+)[\"“”]")


def check_explanation(text: str, f: Facts, state: DialogueState, items: dict[int, Item],
                      title_index, known_people: set[str], partial: bool = False,
                      values: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Problems with ``text`` as an explanation of ``f.item``; empty means it may be shown.

    Checked: form (length, finished, at most two sentences, no prompt echo, no
    repeats, few words the facts do not support); every catalog title it names
    is the item or a liked item, with the right year; quoted text is such a
    title; every known person is credited on the item or a liked item; every
    year or decade fits the item, a liked item or the request; every genre word
    is a genre of the item. On an imported catalog (``f.noun``) also: every facet value
    of the catalog (``values``: field -> its values) it names is the item's, a liked
    item's or one the user named, and every number is one the facts or the request give.
    ``partial``: ``text`` is the start of a draft still being written (streaming), so it
    may be unfinished.
    """
    if not text.strip():
        return [] if partial else ["empty"]
    liked = [items[i] for i in state.liked if i in items]
    # Titles and names the text may state; blanked out before looking for other titles,
    # counting sentences or repeats ("Dr. Strangelove", "Michael Bay" are not claims).
    allowed = [f.item.title, *f.roles.credits(f.item)]
    for lk in liked:
        allowed += [lk.title, *f.roles.credits(lk)]
    blank = _blank(text, allowed)
    facets = _facet_problems(text, blank, f, liked, state, values or {}) if f.noun else []
    return (_form_problems(text, blank, f, liked, partial)
            + _title_problems(text, blank, f, liked, items, title_index)
            + _fact_problems(text, blank, f, liked, state, known_people) + facets)


_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")


def _facet_problems(text, blank, f: Facts, liked, state, values) -> list[str]:
    """An imported catalog's facts: values of its facets, and numbers (prices, sizes)."""
    problems = []
    lowered = blank.lower()
    for field, choices in values.items():
        own = {str(v).lower() for it in (f.item, *liked) for v in it.values(field)}
        own |= {v.lower() for fl, v in (*state.facets, *state.excluded_facets) if fl == field}
        for value in choices:
            v = str(value).lower()
            if v not in own and re.search(r"(?<![\w-])" + re.escape(v) + r"(?![\w-])", lowered):
                problems.append(f"says {field.replace('_', ' ')} {value!r}, which is not its")
    grounding = set(re.findall(r"[a-z0-9']+", (" ".join(f.lines()) + " " + state.query + " "
                                               + " ".join(it.title for it in liked)).lower()))
    loose = sorted(w for w in set(re.findall(r"[a-z']+", lowered))
                   if len(w) > 2 and w not in grounding and w not in _GLUE)
    if len(loose) > 1:  # a catalog's facts are few: "a gift for a friend" is invented
        problems.append(f"says things the facts do not: {loose[:6]}")
    if re.match(r"\s*(the|this) (user|customer)\b", text, re.I):
        problems.append("speaks of the user instead of to them")
    grounded = [float(x.replace(",", ".")) for x in
                _NUMBER.findall(" ".join(f.lines()) + " " + state.query)]
    for m in _NUMBER.finditer(blank):
        x = float(m.group(0).replace(",", "."))
        if not any(abs(x - g) < 0.5 for g in grounded):
            problems.append(f"states a number the facts do not give: {m.group(0)}")
    return problems


def _form_problems(text: str, blank: str, f: Facts, liked: list[Item], partial: bool) -> list[str]:
    problems = []
    if len(text.split()) > MAX_WORDS:
        problems.append("too long")
    if not partial and not text.rstrip().endswith((".", "!")):
        problems.append("unfinished sentence")
    if len(re.findall(r"[.!?](?:\s|$)", blank)) > 2:
        problems.append("more than two sentences")
    if re.search(r"\b(movie|facts?|title)\s*:", text, re.I) or "\n" in text.strip():
        problems.append("echoes the prompt")
    words = re.findall(r"[a-z0-9']+", blank.lower())
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    if len(grams) != len(set(grams)):
        problems.append("repeats itself")
    grounding = " ".join(f.lines()).lower() + " " + " ".join(
        f"{lk.title} {' '.join(f.roles.genres_of(lk))}" for lk in liked).lower()
    unsupported = [w for w in set(re.findall(r"[a-z0-9']+", text.lower()))
                   if w not in grounding and w not in _GLUE and len(w) > 2]
    if len(unsupported) > 3:
        problems.append(f"says things the facts do not: {sorted(unsupported)[:6]}")
    return problems


def _title_problems(text, blank, f: Facts, liked, items, title_index) -> list[str]:
    problems = []
    allowed_keys = {title_key(t) for t in [f.item.title, *(lk.title for lk in liked)]}
    for m in title_index.find(blank):
        if title_key(items[m.item_id].title) not in allowed_keys and _mentions_title(m.text):
            problems.append(f"names another title: {m.text!r}")
    for m in title_index.find(text):
        after = re.match(r"\s*\((\d{4})\)", text[m.end:])
        if after and m.item_id in items and f.roles.year_of(items[m.item_id]) != int(after.group(1)):
            problems.append(f"gives {m.text!r} the wrong year")
    for q in _QUOTED.findall(text):
        if title_key(q) not in allowed_keys:
            problems.append(f"quotes something that is not the item or a liked title: {q!r}")
    return problems


def _fact_problems(text, blank, f: Facts, liked, state, known_people) -> list[str]:
    problems = []
    roles = f.roles
    credited = set(roles.credits(f.item))
    for lk in liked:
        credited |= set(roles.credits(lk))
    for run in _CAPITAL_RUN.findall(text):
        if run in known_people and run not in credited:
            problems.append(f"names a person not credited: {run!r}")
    years = ({roles.year_of(f.item)} | {roles.year_of(lk) for lk in liked}
             | {state.year_min, state.year_max})
    decades = {y // 10 * 10 for y in years if y}
    for m in _YEAR.finditer(text):
        y, is_decade = int(m.group(1)), m.group(0).endswith("s")
        if (is_decade and y not in decades) or (not is_decade and y not in years):
            problems.append(f"states a year that does not fit: {m.group(0)}")
    lowered = blank.lower()
    for genre, words in genre_words().items():
        if genre not in roles.genres_of(f.item) and any(
                re.search(r"(?<![\w-])" + re.escape(w) + r"(?![\w-])", lowered)
                for w in words if w in _GENRE_NAMES):
            problems.append(f"calls it {genre}, which it is not")
    return problems


# Only unambiguous genre names count as a claim ("space" or "family" may be description).
_GENRE_NAMES = {g.lower() for g in ML_GENRES} | {"sci fi", "science fiction", "scifi", "comedy",
                                                 "comedies", "romantic", "animated", "documentary",
                                                 "western", "musical", "thriller", "horror", "noir"}


# Words an explanation may use beyond the facts without claiming anything.
_GLUE = set("""
this that these those it its it's is are was were be been has have had also both and or but
as so such with for from of in on at by to the a an you your you'll you've youre if since
because which who whom whose what when while than then too very more most much many well
like liked love loved enjoy enjoyed enjoys fan fans might may will would could should can
great good fit fits suits suit pick choice watch watched watching film films movie movies
story stories similar same kind sort style feel mood taste tastes favourite favorite also
another one two perfect worth check out give try here there classic era decade years year
released release came out made directed director stars starring star cast features featuring
genre genres asked request requested want wanted looking often people who viewers audiences
chose chosen choose choosing bought buy buyers customers shoppers item items product products
""".split())


def _blank(text: str, phrases) -> str:
    """``text`` with each phrase (longest first, any case) replaced by ``X``."""
    for phrase in sorted({p for p in phrases if p}, key=len, reverse=True):
        text = re.sub(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", "X", text, flags=re.I)
    return text


def _mentions_title(span: str) -> bool:
    # A lower-case one-word "title" inside prose ("heat", "speed") is a word, not a claim.
    return span[:1].isupper() or len(span.split()) > 1


def whole_sentences(text: str, most: int = 2) -> str:
    """The first ``most`` complete sentences of a draft, without a trailing fragment
    (generation stops at a token budget, often mid-sentence). A draft with no complete
    sentence comes back whole, for the check to reject.

    >>> whole_sentences("It is a comedy. Directed by Ron Howard. It also stars")
    'It is a comedy. Directed by Ron Howard.'
    >>> whole_sentences("Dr. Strangelove is satirical. It fits.", most=1)
    'Dr. Strangelove is satirical.'
    >>> whole_sentences("It is a comedy that")
    'It is a comedy that'
    """
    text = " ".join(text.split())
    ends = [m.end() for m in re.finditer(r"(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bSt)(?<!\bvs)"
                                         r"[.!](?=\s|$)", text)]
    if not ends:
        return text
    return text[: ends[min(most, len(ends)) - 1]]
