"""Dialogue state across turns: ``merge`` builds the next state from a parsed message;
``constraint``/``satisfies`` is the one rule an item must meet (``agent.understand.rule``),
also written as a Chroma where-filter (``chroma_where``); ``relaxations`` loosens it step by step; ``describe``
says it back to the user."""

from __future__ import annotations

from typing import Callable

from agent.domain.movielens.film import film_roles
from agent.domain.roles import Roles
from agent.types import DialogueState, Item
from agent.understand.parse import ParsedMessage
from agent.understand.rule import Rule, mood_groups


def merge(state: DialogueState, parsed: ParsedMessage,
          items: dict[int, Item] | None = None, roles: Roles | None = None) -> DialogueState:
    """The next state: likes and dislikes accumulate (the newest statement wins),
    genres accumulate, and new year bounds replace old ones. References ("the second
    one", "something older") resolve against the last answer's picks (``state.last``)
    and need ``items`` for their years (``roles``: the catalog's, default MovieLens')."""
    roles = roles if roles is not None else film_roles()
    ref_liked = _resolve(parsed.liked_refs, state.last)
    ref_disliked = _resolve(parsed.disliked_refs, state.last)
    new_liked = list(parsed.liked) + ref_liked
    new_disliked = list(parsed.disliked) + ref_disliked
    liked = [i for i in state.liked if i not in new_disliked] + new_liked
    disliked = [i for i in state.disliked if i not in new_liked] + new_disliked
    excluded = [g for g in state.excluded_genres if g not in parsed.genres] + list(parsed.excluded_genres)
    genres = [g for g in state.genres if g not in parsed.excluded_genres] + list(parsed.genres)
    if parsed.only_genres and parsed.genres:
        genres = list(parsed.genres)
    if parsed.any_genre:
        genres, excluded = list(parsed.genres), list(parsed.excluded_genres)
    moods = list(state.moods) + [m for m in parsed.moods if m not in state.moods]
    if parsed.any_genre:
        moods = list(parsed.moods)
    year_min, year_max = state.year_min, state.year_max
    explicit = parsed.year_min is not None or parsed.year_max is not None
    if explicit:  # an explicit bound wins over a relative cue in the same message
        year_min, year_max = parsed.year_min, parsed.year_max
    elif parsed.any_year:
        year_min = year_max = None
    years = [y for i in state.last if items and i in items
             for y in [roles.year_of(items[i])] if y]
    if parsed.older and years and not explicit and not parsed.any_year:
        year_min, year_max = None, min(years) - 1
    elif parsed.newer and years and not explicit and not parsed.any_year:
        year_min, year_max = max(years) + 1, None
    like_genres, outside = state.like_genres, state.outside
    if parsed.outside:  # the newest title outside the catalog says what the user means now
        like_genres = tuple(dict.fromkeys(g for f in parsed.outside for g in f.genres))
        outside = tuple(f.label for f in parsed.outside)
    tail = state.tail_boost if parsed.tail_boost is None else parsed.tail_boost
    facets, excluded_facets, bounds = _merge_facets(state, parsed.facets)
    return state.with_changes(
        facets=facets, excluded_facets=excluded_facets, bounds=bounds,
        liked=tuple(dict.fromkeys(liked)), disliked=tuple(dict.fromkeys(disliked)),
        genres=tuple(dict.fromkeys(genres)), excluded_genres=tuple(dict.fromkeys(excluded)),
        year_min=year_min, year_max=year_max, query=parsed.query, tail_boost=tail,
        genre_or=parsed.genre_or if parsed.genres else state.genre_or and not parsed.any_genre,
        people=tuple(dict.fromkeys(p for p in state.people + parsed.people
                                   if p not in parsed.excluded_people)),
        excluded_people=tuple(dict.fromkeys(
            [p for p in state.excluded_people if p not in parsed.people]
            + list(parsed.excluded_people))),
        moods=tuple(moods),
        like_genres=like_genres, outside=outside, not_found=parsed.not_found,
        lesser_known=tail is not None and tail >= 0.5,
        well_liked=parsed.well_liked or state.well_liked)


def _merge_facets(state: DialogueState, asked):
    """Facet asks accumulate; the newest statement about a value wins ("no leather" after
    "leather boots"), and a new bound replaces that side of the range's old one."""
    if not asked:
        return state.facets, state.excluded_facets, state.bounds
    facets = [fv for fv in state.facets if fv not in asked.excluded] + list(asked.wanted)
    excluded = ([fv for fv in state.excluded_facets if fv not in asked.wanted]
                + list(asked.excluded))
    bounds = {f: (lo, hi) for f, lo, hi in state.bounds}
    for f, lo, hi in asked.bounds:
        old_lo, old_hi = bounds.get(f, (None, None))
        bounds[f] = (old_lo if lo is None else lo, old_hi if hi is None else hi)
    return (tuple(dict.fromkeys(facets)), tuple(dict.fromkeys(excluded)),
            tuple((f, lo, hi) for f, (lo, hi) in bounds.items()))


def _resolve(positions: tuple[int, ...], last: tuple[int, ...]) -> list[int]:
    """Item ids at ``positions`` of the last answer (out-of-range ones are ignored)."""
    return [last[p] for p in positions if -len(last) <= p < len(last)]


def satisfies(item: Item, state: DialogueState, roles: Roles | None = None) -> bool:
    """Whether ``item`` meets the hard constraints (``agent.understand.rule``, the same
    rule ``chroma_where`` gives the index; ``roles``: the catalog's, default MovieLens')."""
    return Rule.of(state, roles).fits(item)


def constraint(state: DialogueState, roles: Roles | None = None) -> Callable[[Item], bool]:
    """``satisfies`` for one state, its rule built once: a source that tests every catalog
    item (a known user's ``shown`` is their whole history) calls it per item."""
    return Rule.of(state, roles).fits


YEAR_WIDENING = (10, 25, 50)  # years added on each side of a bound, step by step


def relaxations(state: DialogueState, schema=None):
    """Looser versions of ``state``, each with a sentence saying what was let go, in the
    order a turn tries them when too little fits: genres any-of instead of all-of, then
    well-known films allowed for "hidden gems", then the moods, then the genres of titles
    named outside the catalog, then the years (widened), and last, when a person was
    named, the genres ("with Cary Grant" after "a mystery": his other films). Each step
    keeps the earlier ones, so every item the strict state fits still fits.

    >>> [why.split(",")[0] for _, why in relaxations(DialogueState(genres=("Crime", "Western"),
    ...                                                             lesser_known=True))]
    ['few films are Crime and Western at once', 'few lesser-known films fit']
    """
    s = state
    if len(s.genres) >= 2 and not s.genre_or:
        s = s.with_changes(genre_or=True)
        yield s, (f"few films are {' and '.join(s.genres)} at once, so these are any of them")
    if s.lesser_known:
        s = s.with_changes(lesser_known=False)
        yield s, "few lesser-known films fit, so some of these are well known"
    if s.moods:
        moods = " and ".join(s.moods)
        s = s.with_changes(moods=())
        yield s, f"few films fit the {moods} mood as well as the rest, so that mood was dropped"
    if s.like_genres:
        s = s.with_changes(like_genres=())
        yield s, ("few films share the genres of " + ", ".join(s.outside)
                  + " as well as the rest, so those genres were dropped")
    lo, hi = s.year_min, s.year_max
    for widen in YEAR_WIDENING:  # wider, not gone: "even older" must stay old
        if lo is None and hi is None:
            break
        s = s.with_changes(year_min=None if lo is None else lo - widen,
                           year_max=None if hi is None else hi + widen)
        yield s, (f"few films fit all that in those years, so these are from up to {widen} "
                  "years around them")
    # A catalog's own facets, the one its schema lists last first: the first (a shop's
    # category, say) is what the item is, and is kept. Exclusions and bounds stay.
    order = [f.field for f in schema.facets] if schema is not None else []
    asked = sorted(dict.fromkeys(f for f, _ in s.facets),
                   key=lambda f: order.index(f) if f in order else len(order))
    for field in reversed(asked[1:]):
        values = " or ".join(v for f, v in s.facets if f == field)
        s = s.with_changes(facets=tuple(fv for fv in s.facets if fv[0] != field))
        yield s, (f"few items have {field.replace('_', ' ')} {values} as well as the rest, "
                  "so that was let go")
    if s.people and s.genres:  # the person is the most specific ask: keep them
        s = s.with_changes(genres=(), genre_or=False)
        yield s, (f"few films with {' or '.join(s.people)} are also "
                  f"{' or '.join(state.genres)}, so these are of other genres too")


def genre_fit(item: Item, state: DialogueState, roles: Roles | None = None) -> float:
    """How much of what ``item`` is the request asks for: the share of its genres that
    are asked for, and the share in each mood's group, averaged (1 for a crime comedy
    asked as "a crime comedy", or a drama-romance asked to be sad; 0.4 for Star Wars, a
    war film and a romance among five genres).

    >>> from agent.domain.movielens.film import film
    >>> sad = DialogueState(moods=("sad",))
    >>> genre_fit(film(1, "A", 1996, ("Drama", "Romance", "War")), sad)
    1.0
    >>> genre_fit(film(2, "B", 1977, ("Action", "Adventure", "Romance", "Sci-Fi", "War")), sad)
    0.4
    >>> crime = DialogueState(genres=("Crime",))
    >>> genre_fit(film(3, "C", 1973, ("Comedy", "Crime", "Drama")), crime)
    0.3333333333333333
    """
    groups = [set(g) for g, _ in mood_groups(state) if g]
    groups += [set(state.genres)] if state.genres else []
    has = set((roles if roles is not None else film_roles()).genres_of(item))
    if not groups or not has:
        return 0.0
    return sum(len(g & has) / len(has) for g in groups) / len(groups)


def chroma_where(state: DialogueState, people_items: set[int] | None = None,
                 unwanted_items: set[int] | None = None, schema=None) -> dict | None:
    """A Chroma ``where`` filter of the rule ``satisfies`` tests (plus ``lesser_known``,
    which needs the catalog's head/tail split). ``people_items``: the items of
    ``state.people``; ``unwanted_items``: those of ``state.excluded_people`` (Chroma
    metadata holds no cast lists); ``schema``: the catalog's, for its roles and the keys
    of its facets (default MovieLens')."""
    return Rule.of(state, schema=schema).where(people_items, unwanted_items)


def describe(state: DialogueState, items: dict[int, Item], schema=None,
             values: dict | None = None) -> str:
    """The state in plain words: ``Looking for: Sci-Fi, 1990-1999, like Alien; not Horror``;
    a range by the ``schema``'s name and unit for it ("running time at most 120 min"), and
    many values of a category by the few of its ``values`` left out ("language other than
    English")."""
    parts = []
    if state.well_liked:
        parts.append("well-liked films")
    parts += [f"something {m}" for m in state.moods]
    if state.genres:
        parts.append((" or " if state.genre_or else " and ").join(state.genres))
    if state.people:
        parts.append("with " + " or ".join(state.people))
    if state.excluded_people:
        parts.append("nothing with " + " or ".join(state.excluded_people))
    if state.year_min is not None and state.year_max is not None:
        parts.append(str(state.year_min) if state.year_min == state.year_max
                     else f"released {state.year_min}-{state.year_max}")
    elif state.year_min is not None:
        parts.append(f"released {state.year_min} or later")
    elif state.year_max is not None:
        parts.append(f"released {state.year_max} or earlier")
    parts += _describe_facets(state, schema, values or {})
    like = [items[i].title for i in state.liked if i in items] + list(state.outside)
    if like:
        parts.append("like " + ", ".join(like))
    if state.lesser_known:
        parts.append("lesser-known picks (no widely watched films)")
    elif state.tail_boost:
        parts.append("lesser-known picks")
    elif state.tail_boost == 0.0:
        parts.append("popular picks")
    text = ", ".join(parts) if parts else "anything"
    avoid = list(state.excluded_genres) + [items[i].title for i in state.disliked if i in items]
    asked = {f for f, _ in state.facets}  # "other than English" says it already
    avoid += [f"{f.replace('_', ' ')} {v}" for f, v in state.excluded_facets if f not in asked]
    if avoid:
        text += "; not " + ", ".join(avoid)
    return "Looking for: " + text


def _describe_facets(state: DialogueState, schema=None, values: dict | None = None
                     ) -> list[str]:
    """``colour blue or navy``, ``price at most 50``, ``running time at most 120 min``,
    ``language other than English``."""
    wanted: dict[str, list[str]] = {}
    for field, value in state.facets:
        wanted.setdefault(field, []).append(value)
    out = []
    for f, v in wanted.items():
        left = [x for x in (values or {}).get(f, ()) if x not in v]
        out.append(f"{f.replace('_', ' ')} other than {' or '.join(left)}"
                   if len(v) >= 4 and 0 < len(left) <= 2
                   else f"{f.replace('_', ' ')} {' or '.join(v)}")
    facets = {f.field: f for f in schema.facets} if schema is not None else {}
    for field, lo, hi in state.bounds:
        facet = facets.get(field)
        name = facet.name if facet else field.replace("_", " ")
        unit = f" {facet.unit}" if facet and facet.unit else ""
        out.append(f"{name} {lo:g}-{hi:g}{unit}" if lo is not None and hi is not None else
                   f"{name} at least {lo:g}{unit}" if lo is not None
                   else f"{name} at most {hi:g}{unit}")
    return out


LIKED_RECENT = 5  # a known user's most recent items stand in for what they say they liked


def known_user_state(history, recent: int = LIKED_RECENT) -> DialogueState:
    """The dialogue state of a user known by their interactions (time order): the most
    recent ``recent`` items liked, everything else watched already seen."""
    liked = tuple(history[-recent:])
    return DialogueState(liked=liked, shown=tuple(i for i in history if i not in liked))
