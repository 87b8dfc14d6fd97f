"""The one rule an item must meet, built once from a dialogue state.

Each condition both tests an item (``Rule.fits``: the sources that scan the catalog) and
writes itself as Chroma ``where`` clauses (``Rule.where``: the semantic search), so the
filter in Python and the filter in the index are one definition and cannot drift apart.
The film slots read the fields the catalog's roles are on (``agent.domain.roles``), a
catalog's own facets their own fields.

>>> from agent.domain.movielens.film import film
>>> from agent.types import DialogueState
>>> rule = Rule.of(DialogueState(shown=(2,), genres=("Sci-Fi",), year_max=1990))
>>> rule.fits(film(1, "Alien", 1979, ("Horror", "Sci-Fi"))), rule.fits(film(2, "Brazil", 1985))
(True, False)
>>> rule.where()
{'$and': [{'item_id': {'$nin': [2]}}, {'year': {'$lte': 1990}}, {'g_sci_fi': True}]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from agent.domain.movielens.film import film_roles
from agent.domain.roles import Roles
from agent.domain.schema import value_slug
from agent.types import DialogueState, Item


@dataclass(frozen=True)
class Within:
    """A range's value between ``lo`` and ``hi`` (either may be open); no value fails."""

    field: str
    key: str  # its number's key in the index
    lo: float | None
    hi: float | None

    def fits(self, item: Item) -> bool:
        v = item.value(self.field)
        return v is not None and (self.lo is None or v >= self.lo) and (
            self.hi is None or v <= self.hi)

    def where(self) -> list[dict]:
        return ([{self.key: {"$gte": self.lo}}] if self.lo is not None else []) + (
            [{self.key: {"$lte": self.hi}}] if self.hi is not None else [])


@dataclass(frozen=True)
class Values:
    """An item's values of one field: ``all`` of ``values``, ``any`` of them, or ``none``.
    ``keys``: each value's boolean flag in the index."""

    field: str
    values: tuple[str, ...]
    mode: str
    keys: tuple[str, ...]

    def fits(self, item: Item) -> bool:
        has = item.values(self.field)
        if self.mode == "none":
            return not any(v in has for v in self.values)
        return (all if self.mode == "all" else any)(v in has for v in self.values)

    def where(self) -> list[dict]:
        if self.mode == "none":
            return [{k: False} for k in self.keys]
        if not self.keys:  # all of no values: anything; any of none: nothing
            return [] if self.mode == "all" else [{"item_id": {"$in": [-1]}}]
        if self.mode == "all" or len(self.keys) == 1:
            return [{k: True} for k in self.keys]
        return [{"$or": [{k: True} for k in self.keys]}]


@dataclass(frozen=True)
class People:
    """Someone among ``names`` credited on the item (``among``), or none of them. The
    index holds no credits, so its clause is the items the caller found for the names."""

    names: frozenset
    among: bool
    credits: Callable[[Item], tuple[str, ...]]

    def fits(self, item: Item) -> bool:
        return bool(self.names & set(self.credits(item))) == self.among


class Rule:
    """What an item must meet: not ``blocked`` (liked, disliked, shown: never suggested
    again), every condition, and for "hidden gems" (``tail``) the long tail."""

    def __init__(self, blocked: tuple[int, ...], conditions: tuple, tail: bool = False):
        self.blocked, self.conditions, self.tail = blocked, conditions, tail
        self._blocked = frozenset(blocked)

    @classmethod
    def of(cls, state: DialogueState, roles: Roles | None = None, schema=None) -> Rule:
        """The rule of ``state`` (``roles``: the catalog's, else ``schema``'s, else
        MovieLens'; ``schema`` also gives the index keys of the catalog's facets)."""
        if roles is None:
            roles = schema.roles if schema is not None else film_roles()
        state = unbound_cleared(state, roles)
        conds: list = []
        if state.year_min is not None or state.year_max is not None:
            conds.append(Within(roles.year, roles.year_key, state.year_min, state.year_max))
        genres = _genre_values(roles)
        if state.excluded_genres:
            conds.append(genres(state.excluded_genres, "none"))
        if state.genres:
            conds.append(genres(state.genres, "any" if state.genre_or else "all"))
        for group, avoid in mood_groups(state):
            conds.append(genres(group, "any"))
            conds += [genres(avoid, "none")] if avoid else []
        for names, among in ((state.people, True), (state.excluded_people, False)):
            if names:
                conds.append(People(frozenset(names), among, roles.credits))
        conds += _facet_conditions(state, schema)
        blocked = tuple(dict.fromkeys(state.liked + state.disliked + state.shown))
        return cls(blocked, tuple(conds), state.lesser_known)

    def fits(self, item: Item) -> bool:
        """Whether ``item`` meets the rule (all but ``tail``, which needs the catalog's
        head/tail split: ``HybridRetriever.fitting`` adds it)."""
        return item.id not in self._blocked and all(c.fits(item) for c in self.conditions)

    def where(self, people_items: set[int] | None = None,
              unwanted_items: set[int] | None = None) -> dict | None:
        """The rule as a Chroma ``where`` filter. ``people_items``: the items of the
        names asked for, ``unwanted_items``: of those excluded (None: not looked up,
        so not filtered by)."""
        clauses: list[dict] = []
        out = list(dict.fromkeys(self.blocked + tuple(sorted(unwanted_items or ()))))
        if out:
            clauses.append({"item_id": {"$nin": out}})
        for c in self.conditions:
            if not isinstance(c, People):
                clauses += c.where()
            elif c.among and people_items is not None:
                clauses.append({"item_id": {"$in": sorted(people_items) or [-1]}})
        if self.tail:
            clauses.append({"bucket": "tail"})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _genre_values(roles: Roles):
    def make(values, mode: str) -> Values:
        values = tuple(values)
        return Values(roles.genre, values, mode, tuple(roles.flag(g) for g in values))
    return make


def _facet_conditions(state: DialogueState, schema) -> list:
    """A catalog's own facets: any of a field's wanted values, none of the excluded ones,
    each range within its bounds.

    >>> s = DialogueState(facets=(("colour", "blue"), ("colour", "navy")),
    ...                   excluded_facets=(("brand", "Nike"),), bounds=(("price", None, 50),))
    >>> jumper = Item(1, "Jumper", {"colour": "navy", "brand": "Uniqlo", "price": 45})
    >>> rule = Rule.of(s, Roles())
    >>> rule.fits(jumper), rule.fits(jumper.with_values(price=60))
    (True, False)
    """
    facets = {f.field: f for f in schema.facets} if schema is not None else {}

    def key(field: str) -> str:
        return (facets[field].key or field) if field in facets else field

    wanted: dict[str, list[str]] = {}
    for field, value in state.facets:
        wanted.setdefault(field, []).append(value)
    out: list = [Values(f, tuple(v), "any", tuple(f"{key(f)}_{value_slug(x)}" for x in v))
                 for f, v in wanted.items()]
    out += [Values(f, (v,), "none", (f"{key(f)}_{value_slug(v)}",))
            for f, v in state.excluded_facets]
    out += [Within(f, key(f), lo, hi) for f, lo, hi in state.bounds]
    return out


def unbound_cleared(state: DialogueState, roles: Roles) -> DialogueState:
    """``state`` without the slots of film roles its catalog lacks: they filter nothing
    (a shop's items have no genres; a state sent by a client may still name some)."""
    change: dict = {}
    if roles.year is None:
        change.update(year_min=None, year_max=None)
    if roles.genre is None:
        change.update(genres=(), excluded_genres=(), moods=(), like_genres=())
    if not roles.people:
        change.update(people=(), excluded_people=())
    return state.with_changes(**change) if change else state


def mood_groups(state: DialogueState) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The state's any-of genre groups with what each excludes: one per mood, and one for
    the genres of titles named outside the catalog."""
    from agent.understand.vocabulary import load_vocabulary

    moods = load_vocabulary().moods
    groups = [(moods[m].any_genres, moods[m].exclude_genres) for m in state.moods if m in moods]
    if state.like_genres:
        groups.append((state.like_genres, ()))
    return groups
