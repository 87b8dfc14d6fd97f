"""The checks of the dialogue suite (``eval.dialogue_suite``): one per expectation key.

Each is a pure function of the expected value and one observed turn (``Seen``) that
returns ``""`` when the expectation holds, else what the agent did instead. ``CHECKS``
maps the keys of ``eval/dialogues.json`` to them, with the kind of value each takes (the
suite loader validates values by kind); every turn with picks is also held to
``INVARIANTS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from agent.domain.movielens.film import credits, film  # film: the doctests' films
from agent.types import DialogueState, Item


@dataclass(frozen=True)
class Seen:
    """One turn as the user sees it. ``previous``: the last answer's picks before this
    turn ("the second one"); ``earlier``: every item shown earlier in the dialogue;
    ``items``: the catalog, for names in messages; ``quality_share``: per item, the
    share of the catalog rated at least as well."""

    text: str = ""
    picks: tuple[Item, ...] = ()
    state: DialogueState = DialogueState()
    previous: tuple[Item, ...] = ()
    earlier: frozenset[int] = frozenset()
    items: Mapping[int, Item] = field(default_factory=dict)
    quality_share: Mapping[int, float] = field(default_factory=dict)
    head: frozenset[int] = frozenset()  # the catalog's widely watched items


def _names(ids, items) -> str:
    return ", ".join(items[i].label if i in items else str(i) for i in ids) or "none"


def _labels(picks) -> str:
    return ", ".join(p.label for p in picks) or "none"


def _slot_values(slot: str, values, items) -> str:
    """A state slot's values in words: titles for liked/disliked ids."""
    return _names(values, items) if slot in ("liked", "disliked") else ", ".join(values) or "none"


def _which(picks, bad) -> str:
    """``""`` when no pick is bad, else the offending labels."""
    return "; ".join(p.label + (f" {why}" if why else "") for p in picks
                     for why in [bad(p)] if why is not None)


# State checks ---------------------------------------------------------------------------

def state_contains(slot: str, want, seen: Seen) -> str:
    """Every wanted value is in the state's ``slot`` (titles as item ids).

    >>> s = Seen(state=DialogueState(genres=("Comedy",)))
    >>> state_contains("genres", ("Comedy",), s), state_contains("genres", ("War",), s)
    ('', 'genres has Comedy, not War')
    """
    have = getattr(seen.state, slot)
    missing = [w for w in want if w not in have]
    if not missing:
        return ""
    return (f"{slot} has {_slot_values(slot, have, seen.items)}, "
            f"not {_slot_values(slot, missing, seen.items)}")


def state_lacks(slot: str, unwanted, seen: Seen) -> str:
    """No unwanted value is in the state's ``slot``.

    >>> state_lacks("people", ("Al Pacino",), Seen(state=DialogueState(people=("Al Pacino",))))
    'people has Al Pacino'
    """
    have = [w for w in unwanted if w in getattr(seen.state, slot)]
    return f"{slot} has {_slot_values(slot, have, seen.items)}" if have else ""


def state_is(slot: str, want, seen: Seen) -> str:
    """The state's ``slot`` equals ``want`` (a year bound or a flag; ``None``: no bound).

    >>> state_is("year_max", 1979, Seen(state=DialogueState(year_max=1993)))
    'year_max is 1993, not 1979'
    """
    have = getattr(seen.state, slot)
    return "" if have == want else f"{slot} is {have}, not {want}"


def pick_in_state(slot: str, position: int, seen: Seen, negate: bool = False) -> str:
    """The previous answer's pick at 1-based ``position`` is (or is not) in ``slot``.

    >>> a, b = film(1, "A", 1990, ()), film(2, "B", 1991, ())
    >>> pick_in_state("liked", 2, Seen(state=DialogueState(liked=(2,)), previous=(a, b)))
    ''
    >>> pick_in_state("disliked", 1, Seen(previous=(a, b)))
    'pick 1 of the previous answer, A (1990), is not in disliked (none)'
    """
    if not 1 <= position <= len(seen.previous):
        return f"the previous answer had {len(seen.previous)} picks, so no pick {position}"
    pick = seen.previous[position - 1]
    have = getattr(seen.state, slot)
    if (pick.id in have) != negate:
        return ""
    return (f"pick {position} of the previous answer, {pick.label}, is "
            f"{'' if negate else 'not '}in {slot} ({_names(have, seen.items)})")


# Pick checks ----------------------------------------------------------------------------

def pick_count(n: int, seen: Seen) -> str:
    """Exactly ``n`` picks.

    >>> pick_count(0, Seen(picks=(film(1, "A", 1990, ()),)))
    '1 picks: A (1990)'
    """
    return "" if len(seen.picks) == n else f"{len(seen.picks)} picks: {_labels(seen.picks)}"


def picks_years(lo: int | None, hi: int | None, seen: Seen) -> str:
    """Every pick is released in ``lo..hi`` (either may be open).

    >>> picks_years(1990, None, Seen(picks=(film(1, "A", 1990, ()), film(2, "B", 1985, ()))))
    'B (1985)'
    """
    def out(p):
        return None if p.value("year") is not None and (lo is None or p.value("year") >= lo) and (
            hi is None or p.value("year") <= hi) else ""
    return _which(seen.picks, out)


def picks_genres(genres, seen: Seen, how: str) -> str:
    """``how`` = "all": every pick has every genre; "any": at least one; "none": none.

    >>> p = (film(1, "A", 1990, ("Comedy",)), film(2, "B", 1991, ("Comedy", "Sci-Fi")))
    >>> picks_genres(("Comedy", "Sci-Fi"), Seen(picks=p), "all")
    'A (1990) lacks Sci-Fi'
    >>> picks_genres(("Sci-Fi",), Seen(picks=p), "none")
    'B (1991) is Sci-Fi'
    >>> picks_genres(("War",), Seen(picks=p), "any")
    'A (1990) is Comedy; B (1991) is Comedy, Sci-Fi'
    """
    def bad(p):
        if how == "all":
            lacks = [g for g in genres if g not in p.values("genres")]
            return f"lacks {', '.join(lacks)}" if lacks else None
        hit = [g for g in genres if g in p.values("genres")]
        if (how == "any") == bool(hit):
            return None
        return f"is {', '.join(hit if how == 'none' else p.values('genres')) or 'no genre'}"
    return _which(seen.picks, bad)


def picks_people(people, seen: Seen, credited: bool) -> str:
    """Every pick credits one of ``people`` (``credited``), or none does.

    >>> p = (film(1, "A", 1990, (), ("Jo Doe",)), film(2, "B", 1991, (), (), ("Al Roe",)))
    >>> picks_people(("Al Roe",), Seen(picks=p), True)
    'A (1990) credits Jo Doe'
    >>> picks_people(("Al Roe",), Seen(picks=p), False)
    'B (1991) credits Al Roe'
    """
    def bad(p):
        names = credits(p)
        if bool(set(people) & set(names)) == credited:
            return None
        hit = [n for n in names if n in people] if not credited else names[:3]
        return f"credits {', '.join(hit) or 'nobody in the catalog'}"
    return _which(seen.picks, bad)


def picks_titles(ids, seen: Seen, included: bool) -> str:
    """Every title in ``ids`` is among the picks (``included``), or none is.

    >>> p = (film(1, "A", 1990, ()),)
    >>> picks_titles((1,), Seen(picks=p), False), picks_titles((2,), Seen(picks=p), True)
    ('picked A (1990)', 'picks are A (1990), not 2')
    """
    got = {p.id for p in seen.picks}
    if included:
        missing = [i for i in ids if i not in got]
        return (f"picks are {_labels(seen.picks)}, not {_names(missing, seen.items)}"
                if missing else "")
    hit = [p for p in seen.picks if p.id in ids]
    return f"picked {_labels(hit)}" if hit else ""


def picks_lesser_known(_, seen: Seen) -> str:
    """No pick is a head item (the catalog's own head/tail split).

    >>> picks_lesser_known(True, Seen(picks=(film(1, "A", 1977, ()),), head=frozenset({1})))
    'A (1977) is widely watched'
    """
    return _which(seen.picks, lambda p: "is widely watched" if p.id in seen.head else None)


def picks_quality_top(share: float, seen: Seen) -> str:
    """Every pick is among the best-rated ``share`` of the catalog.

    >>> s = Seen(picks=(film(1, "A", 1990, ()),), quality_share={1: 0.4})
    >>> picks_quality_top(0.1, s), picks_quality_top(0.5, s)
    ('A (1990) is in the top 40%', '')
    """
    def bad(p):
        q = seen.quality_share.get(p.id, 1.0)
        return None if q <= share else f"is in the top {q:.0%}"
    return _which(seen.picks, bad)


def picks_against_previous(older: bool, seen: Seen) -> str:
    """Every pick is older (``older``) or newer than every pick of the previous answer.

    >>> s = Seen(picks=(film(1, "A", 1980, ()),), previous=(film(2, "B", 1985, ()),))
    >>> picks_against_previous(True, s), picks_against_previous(False, s)
    ('', 'A (1980) is not after 1985')
    """
    years = [p.value("year") for p in seen.previous if p.value("year")]
    if not years:
        return "the previous answer had no picks with a year"
    edge = min(years) if older else max(years)

    def bad(p):
        year = p.value("year")
        ok = year is not None and (year < edge if older else year > edge)
        return None if ok else f"is not {'before' if older else 'after'} {edge}"
    return _which(seen.picks, bad)


def _fitting(seen: Seen) -> list[Item]:
    """The catalog items not shown earlier that fit the whole request (the new state)."""
    from agent.understand.state import satisfies

    state = seen.state.with_changes(shown=tuple(seen.earlier))
    return [it for it in seen.items.values() if satisfies(it, state)
            and not (state.lesser_known and it.id in seen.head)]


def picks_fit_first(_, seen: Seen) -> str:
    """Items that fit the whole request come first: when at least as many fit as were
    picked, every pick fits; when fewer fit, each of them is picked (the rest may be
    looser). "Fits" is ``agent.understand.state.satisfies`` on the new state, with "hidden gems"
    meaning no head item.

    >>> a, b = film(1, "A", 1985, ("Comedy", "Sci-Fi")), film(2, "B", 1983, ("Sci-Fi",))
    >>> s = DialogueState(genres=("Comedy", "Sci-Fi"))
    >>> print(picks_fit_first(True, Seen(picks=(b,), state=s, items={1: a, 2: b})))
    B (1983) does not fit the request, while 1 that fit the whole request were not picked (A (1985))
    >>> picks_fit_first(True, Seen(picks=(a, b), state=s, items={1: a, 2: b}))
    ''
    """
    fitting = _fitting(seen)
    ids = {it.id for it in fitting}
    if sum(p.id in ids for p in seen.picks) >= min(len(seen.picks), len(fitting)):
        return ""
    got = {p.id for p in seen.picks}
    left = [it.label for it in fitting if it.id not in got]
    return (_which(seen.picks, lambda p: None if p.id in ids else "does not fit the request")
            + f", while {len(left)} that fit the whole request were not picked ("
            + ", ".join(left[:3]) + (", ..." if len(left) > 3 else "") + ")")


# Reply checks ---------------------------------------------------------------------------

def reply_has(phrases, seen: Seen, present: bool = True) -> str:
    """Each phrase is (``present``) or is not in the reply text, ignoring case.

    >>> reply_has(("not in the catalog",), Seen(text="Looking for: anything."))
    "no 'not in the catalog' in: Looking for: anything."
    """
    text = seen.text.lower()
    wrong = [p for p in phrases if (p.lower() in text) != present]
    if not wrong:
        return ""
    return f"{'no ' if present else ''}{', '.join(map(repr, wrong))} in: {seen.text[:300]}"


def asks(what: str, seen: Seen) -> str:
    """The reply is the clarifying question (``"clarify"``) or the off-topic answer."""
    from agent.recommender import CLARIFY, OFF_TOPIC

    sentence = {"clarify": CLARIFY, "off_topic": OFF_TOPIC}[what]
    return "" if sentence in seen.text else f"the reply does not ask ({what}): {seen.text[:300]}"


def relaxed(want: bool, seen: Seen) -> str:
    """The reply says (``want``) or does not say that a constraint was loosened: one of
    the sentences ``agent.understand.state.relaxations`` gives for the state is in the text.

    A dialogue expects loosening where the catalog runs out of fits, which depends on
    what earlier turns showed: when as many unshown items fit as were picked, and the
    picks are those fits, not loosening is right too."""
    from agent.understand.state import relaxations

    text = seen.text.lower()
    said = [why for _, why in relaxations(seen.state) if why.lower() in text]
    if bool(said) == want:
        return ""
    if want and seen.picks and len(_fitting(seen)) >= len(seen.picks) and not picks_fit_first(
            True, seen):
        return ""  # nothing had to be loosened: this many unshown items fit, and were picked
    if said:
        return f"said {said[0]!r}"
    return f"no constraint was said to be loosened: {seen.text[:300]}"


def picks_new(_, seen: Seen) -> str:
    """No pick was shown earlier in the dialogue."""
    return _which(seen.picks, lambda p: "was shown earlier" if p.id in seen.earlier else None)


def no_rated_pick(_, seen: Seen) -> str:
    """No pick is a title the user liked or disliked."""
    rated = set(seen.state.liked) | set(seen.state.disliked)
    return _which(seen.picks, lambda p: "was rated by the user" if p.id in rated else None)


def unless_loosened(check: Callable[[object, Seen], str]) -> Callable[[object, Seen], str]:
    """``check``, where a pick that misses it passes if it is a loosened pick said as such.

    What a pick must be (its years, genres, people) comes from the dialogue's script,
    but how many items fit depends on what earlier turns happened to show. A pick that
    misses the expectation is accepted when it does not fit the request (the state), the
    reply said what was loosened, and every unshown item that fits was picked
    (``picks_fit_first``). A pick that fits the state yet misses the expectation still
    fails: then the state is wrong.
    """
    def run(value, seen: Seen) -> str:
        why = check(value, seen)
        if not why or relaxed(True, seen) or picks_fit_first(True, seen):
            return why
        fits = {it.id for it in _fitting(seen)}
        missed = [p for p in seen.picks if check(value, replace(seen, picks=(p,)))]
        if all(p.id not in fits for p in missed):
            return ""
        return why
    return run


@dataclass(frozen=True)
class Check:
    # What the value is: titles, genres, people, moods, year, bool, true, count, position,
    # phrases, ask or fraction (``eval.dialogue_suite.resolve`` checks it).
    kind: str
    fn: Callable[[object, Seen], str]
    needs_reply: bool = True  # a pick or reply check: not on a feedback turn


def _state(kind, fn):
    return Check(kind, fn, needs_reply=False)


CHECKS: dict[str, Check] = {
    **{slot: _state(kind, lambda v, s, slot=slot: state_contains(slot, v, s))
       for slot, kind in [("liked", "titles"), ("disliked", "titles"), ("genres", "genres"),
                          ("excluded_genres", "genres"), ("people", "people"), ("moods", "moods")]},
    **{f"not_{slot}": _state(kind, lambda v, s, slot=slot: state_lacks(slot, v, s))
       for slot, kind in [("liked", "titles"), ("disliked", "titles"), ("genres", "genres"),
                          ("people", "people")]},
    **{slot: _state(kind, lambda v, s, slot=slot: state_is(slot, v, s))
       for slot, kind in [("year_min", "year"), ("year_max", "year"), ("lesser_known", "bool"),
                          ("well_liked", "bool"), ("genre_or", "bool")]},
    "liked_pick": _state("position", lambda v, s: pick_in_state("liked", v, s)),
    "disliked_pick": _state("position", lambda v, s: pick_in_state("disliked", v, s)),
    "not_liked_pick": _state("position", lambda v, s: pick_in_state("liked", v, s, negate=True)),
    "picks": Check("count", pick_count),
    "picks_year_min": Check("year", unless_loosened(lambda v, s: picks_years(v, None, s))),
    "picks_year_max": Check("year", unless_loosened(lambda v, s: picks_years(None, v, s))),
    "picks_have_genres": Check("genres", unless_loosened(
        lambda v, s: picks_genres(v, s, "all"))),
    "picks_have_any_genre": Check("genres", lambda v, s: picks_genres(v, s, "any")),
    "picks_lack_genres": Check("genres", lambda v, s: picks_genres(v, s, "none")),
    "picks_credit": Check("people", unless_loosened(lambda v, s: picks_people(v, s, True))),
    "picks_lack_people": Check("people", lambda v, s: picks_people(v, s, False)),
    "picks_include": Check("titles", lambda v, s: picks_titles(v, s, True)),
    "picks_exclude": Check("titles", lambda v, s: picks_titles(v, s, False)),
    "picks_lesser_known": Check("true", picks_lesser_known),
    "picks_fit_first": Check("true", picks_fit_first),
    "picks_quality_top": Check("fraction", picks_quality_top),
    # "Older" than the oldest pick shown may leave nothing: M (1931) is the oldest thriller.
    # Then a pick from around those years passes only as a pick check's loosened pick does.
    "picks_older_than_previous": Check("true", unless_loosened(
        lambda v, s: picks_against_previous(True, s))),
    "picks_newer_than_previous": Check("true", unless_loosened(
        lambda v, s: picks_against_previous(False, s))),
    "reply_contains": Check("phrases", lambda v, s: reply_has(v, s, True)),
    "reply_lacks": Check("phrases", lambda v, s: reply_has(v, s, False)),
    "asks": Check("ask", asks),
    "relaxed": Check("bool", relaxed),
}
INVARIANTS = {"picks_new": picks_new, "no_rated_pick": no_rated_pick}
