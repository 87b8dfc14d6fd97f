"""The facts an explanation may state: how a pick connects to what this user said
(``gather_facts``), each with the catalog value it rests on."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as _field

from agent.domain.movielens.film import film_roles
from agent.domain.roles import Roles
from agent.types import DialogueState, Item

MAX_WORDS = 60
EXPLAIN_PROMPTS = ("explain_system", "explain_user")
COWATCH_TOP = 20  # "among the N films most often watched alongside X" only for N <= this
SHORT_RUNTIME, LONG_RUNTIME = 90, 150  # minutes


@dataclass(frozen=True)
class Facts:
    """What is true of ``item`` in relation to this user's state."""

    item: Item
    shared_genres: tuple[str, ...]
    genre_sources: tuple[Item, ...]  # liked items sharing those genres
    shared_people: tuple[tuple[str, str, Item], ...]  # (name, its role, liked item)
    cowatched_with: tuple[Item, ...]
    meets_genre: tuple[str, ...]
    meets_years: tuple[int | None, int | None] | None
    # The liked item it resembles most (shared genres + people + co-watching), and the
    # genres the two share.
    closest: Item | None = None
    closest_genres: tuple[str, ...] = ()
    # Co-watching strength: its rank among the items most co-watched with a liked item
    # (1 = the most), and how many of the ``n_liked`` liked items it is co-watched with.
    cowatch_rank: tuple[Item, int] | None = None
    n_liked: int = 0
    # What sets it apart: genres none of the liked items has; its decade when no liked
    # item is from that decade.
    adds_genres: tuple[str, ...] = ()
    new_decade: int | None = None
    meets_people: tuple[tuple[str, str], ...] = ()  # (name, its role) asked for
    meets_moods: tuple[tuple[str, str], ...] = ()  # (mood, a genre of the item in its group)
    # A catalog's own facets (agent.understand.facets): the asked values it has, as
    # (facet name, value); the bounds it meets, as (facet name, its value, the bound);
    # and its other fact facets, as (facet name, value).
    meets_facets: tuple[tuple[str, str], ...] = ()
    meets_bounds: tuple[tuple[str, str, str], ...] = ()
    bounded: tuple[str, ...] = ()  # the fields of those bounds ("runtime")
    facet_facts: tuple[tuple[str, str], ...] = ()
    # How an imported catalog names one item ("product"); "" for films, whose facts
    # and frames speak of watching.
    noun: str = ""
    # The catalog's film roles: which fields hold its year, genres and people.
    roles: Roles = _field(default_factory=film_roles, compare=False)

    def lines(self) -> list[str]:
        """The facts as short lines for the explanation prompt (and the checker's
        grounding: a word the lines use is a word an explanation may use)."""
        it, roles = self.item, self.roles
        if self.noun:
            return self._catalog_lines()
        year = roles.year_of(it)
        out = [f"{it.title} came out in {year}." if year else f"{it.title}."]
        genres = ", ".join(roles.genres_of(it))
        directors = ", ".join(n for n, role in roles.credited(it) if role == "director")
        if genres:
            out.append(f"Genres: {genres}.")
        if directors:
            out.append(f"Directed by {directors}.")
        for name, role, liked in self.shared_people:
            verb = _VERBS.get(role, "is credited on")
            out.append(f"{name} also {verb} {liked.title}, which the user liked.")
        for name, role in self.meets_people:
            out.append(f"{name}, whom the user asked for, is credited on it"
                       + (f" ({role})." if role != "people" else "."))
        if self.closest is not None and self.closest_genres:
            out.append(f"Of the liked titles it is closest to {self.closest.title}: it shares "
                       f"{join_words(self.closest_genres)} with it.")
        if self.shared_genres:
            out.append(f"Like {join_words([i.title for i in self.genre_sources])}, it is "
                       f"{join_words(self.shared_genres)}.")
        if self.cowatched_with:
            out.append(f"People who watched {join_words([i.title for i in self.cowatched_with])} "
                       "often watched it too.")
            if self.n_liked >= 2 and len(self.cowatched_with) >= 2:
                out.append(f"{len(self.cowatched_with)} of the {self.n_liked} liked titles "
                           "share viewers with it"
                           + (" (all of them, both)." if len(self.cowatched_with) == self.n_liked
                              else "."))
        if self.cowatch_rank is not None:
            liked, rank = self.cowatch_rank
            out.append(f"It is the film most often watched alongside {liked.title}." if rank == 1
                       else f"It is among the {top_band(rank)} films most often watched alongside "
                            f"{liked.title}.")
        if self.adds_genres:
            out.append(f"It adds {join_words(self.adds_genres)}, which none of the liked titles "
                       f"have: unlike them, it is {join_words(self.adds_genres)}.")
        if self.new_decade:
            out.append(f"It is from the {self.new_decade}s, a different decade from the "
                       "liked titles.")
        runtime, country = it.value("runtime"), it.value("country")
        if runtime:
            size = (", which is short" if runtime <= SHORT_RUNTIME else
                    ", which is long" if runtime >= LONG_RUNTIME else "")
            out.append(f"It runs {runtime} minutes{size}.")
        if country:
            out.append(f"Made in {country}.")
        if self.meets_years:
            out.append(f"It fits the requested years ({_years(self.meets_years)}).")
        if self.meets_genre:
            out.append(f"It is {join_words(self.meets_genre)}, as requested.")
        for mood, genre in self.meets_moods:
            out.append(f"It fits the {mood} mood the user asked for: it is {genre}.")
        return out + self._facet_lines()


    def _facet_lines(self) -> list[str]:
        """A catalog's own facets: its facts, the asked values it has, the bounds met."""
        return ([f"Its {name}: {value}." for name, value in self.facet_facts]
                + [f"Its {name} is {value}, as the user asked."
                   for name, value in self.meets_facets]
                + [f"Its {name}, {value}, is within the user's {bound}."
                   for name, value, bound in self.meets_bounds])

    def _catalog_lines(self) -> list[str]:
        """``lines`` for an imported catalog: its facets, and co-choice in neutral words."""
        nouns = self.noun + "s"
        out = [f"{self.item.title}."]
        if self.cowatched_with:
            out.append(f"People who chose {join_words([i.title for i in self.cowatched_with])} "
                       "often chose it too.")
            if self.n_liked >= 2 and len(self.cowatched_with) >= 2:
                out.append(f"{len(self.cowatched_with)} of the {self.n_liked} liked {nouns} "
                           "are often chosen with it.")
        if self.cowatch_rank is not None:
            liked, rank = self.cowatch_rank
            out.append(f"It is the {self.noun} most often chosen alongside {liked.title}."
                       if rank == 1 else f"It is among the {top_band(rank)} {nouns} most "
                       f"often chosen alongside {liked.title}.")
        return out + self._facet_lines()


_VERBS = {"director": "directed", "cast": "appears in"}  # role "people": "is credited on"


def top_band(rank: int) -> int:
    """A round "top N" that ``rank`` is within: 2 -> 5, 7 -> 10."""
    return next(n for n in (5, 10, 20, 50, rank) if rank <= n)


def join_words(words) -> str:
    words = list(words)
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _years(bounds) -> str:
    lo, hi = bounds
    if lo is not None and hi is not None:
        return str(lo) if lo == hi else f"{lo}-{hi}"
    return f"{lo} or later" if lo is not None else f"{hi} or earlier"


def _cowatch_value(cowatch, a: int, b: int) -> float:
    if cowatch is None:
        return 0.0
    try:
        return float(cowatch[a, b])
    except (IndexError, ValueError):
        return 0.0


def _cowatch_rank(cowatch, liked_id: int, item_id: int) -> int | None:
    """1 + how many other items are co-watched with ``liked_id`` at least as much as
    ``item_id`` is (ties count against it, so "the most" is never shared)."""
    value = _cowatch_value(cowatch, liked_id, item_id)
    if value <= 0:
        return None
    row = cowatch[liked_id]
    if hasattr(row, "indices"):  # a scipy sparse row: only its stored entries
        cols, vals = row.indices, row.data
        return 1 + sum(1 for c, v in zip(cols.tolist(), vals.tolist())
                       if v >= value and c not in (liked_id, item_id))
    vals = list(getattr(row, "tolist", lambda: row)())
    vals = vals[0] if vals and isinstance(vals[0], list) else vals
    return 1 + sum(1 for c, v in enumerate(vals) if v >= value and c not in (liked_id, item_id))


def gather_facts(item: Item, state: DialogueState, items: dict[int, Item], cowatch,
                 schema=None) -> Facts:
    """What is true of ``item`` in relation to ``state`` (``schema``: the catalog's, for
    its own facets and film roles; None for MovieLens' film facts alone)."""
    roles = schema.roles if schema is not None else film_roles()
    genres_of = roles.genres_of
    liked = [items[i] for i in state.liked if i in items]
    shared, sources = [], []
    for lk in liked:
        common = [g for g in genres_of(item) if g in genres_of(lk)]
        if common:
            sources.append(lk)
            shared += [g for g in common if g not in shared]
    people = []
    credited = roles.credited(item)
    for lk in liked:
        theirs = set(roles.credited(lk))
        people += [(n, role, lk) for n, role in credited if (n, role) in theirs]
    cow = [lk for lk in liked if _cowatch_value(cowatch, lk.id, item.id) > 0]
    years = None
    if state.year_min is not None or state.year_max is not None:
        years = (state.year_min, state.year_max)

    def closeness(lk: Item) -> float:
        genres = sum(g in genres_of(lk) for g in genres_of(item))
        persons = sum(p[2].id == lk.id for p in people)
        co = _cowatch_value(cowatch, lk.id, item.id)
        return genres + 2 * persons + (1 + co if co > 0 else 0)

    ranked = sorted((lk for lk in liked if closeness(lk) > 0), key=closeness, reverse=True)
    closest = ranked[0] if ranked else None
    closest_genres = tuple(g for g in genres_of(item) if closest and g in genres_of(closest))
    rank = None
    for lk in cow:
        r = _cowatch_rank(cowatch, lk.id, item.id)
        if r is not None and r <= COWATCH_TOP and (rank is None or r < rank[1]):
            rank = (lk, r)
    liked_genres = {g for lk in liked for g in genres_of(lk)}
    adds = tuple(g for g in genres_of(item) if liked and g not in liked_genres)
    decades = {y // 10 * 10 for lk in liked for y in [roles.year_of(lk)] if y}
    year = roles.year_of(item)
    decade = int(year) // 10 * 10 if year else None
    new_decade = decade if decade and decades and decade not in decades else None
    asked = tuple(dict.fromkeys((n, r) for n, r in credited if n in state.people))
    return Facts(item, tuple(shared), tuple(sources), tuple(people[:2]), tuple(cow),
                 tuple(g for g in state.genres if g in genres_of(item)), years,
                 closest=closest, closest_genres=closest_genres, cowatch_rank=rank,
                 n_liked=len(liked), adds_genres=adds, new_decade=new_decade,
                 meets_people=asked[:2], meets_moods=_moods_met(item, state, roles), roles=roles,
                 **(_facet_facts(item, state, schema) if schema is not None else {}))


def _facet_facts(item: Item, state: DialogueState, schema) -> dict:
    """The asked facet values ``item`` has, the bounds it meets, and its other facts."""
    names = {f.field: f.name for f in schema.facets}
    unit = {f.field: f.unit for f in schema.facets}

    def shown(field, value) -> str:
        text = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{text} {unit[field]}".strip() if unit.get(field) else text

    def has(field, value) -> bool:
        v = item.value(field)
        return value in v if isinstance(v, (list, tuple)) else v == value

    meets = tuple((names[f], v) for f, v in state.facets if f in names and has(f, v))
    bounds, bounded = [], []
    for field, lo, hi in state.bounds:
        if field in names and item.value(field) is not None:
            text = (f"{lo:g}-{shown(field, hi)}" if lo is not None and hi is not None else
                    f"at least {shown(field, lo)}" if lo is not None
                    else f"at most {shown(field, hi)}")
            bounds.append((names[field], shown(field, item.value(field)), f"{names[field]} {text}"))
            bounded.append(field)
    asked = {f for f, _ in state.facets} | {f for f, _, _ in state.bounds}
    facts = []
    film = schema.roles.films  # a film's own facts say its running time
    for f in () if film else schema.requestable:
        value = item.value(f.field)
        if f.fact and f.field not in asked and value not in (None, "", [], ()):
            values = value if isinstance(value, (list, tuple)) else [value]
            facts.append((f.name, ", ".join(shown(f.field, v) for v in values[:3])))
    return {"meets_facets": meets, "meets_bounds": tuple(bounds), "bounded": tuple(bounded),
            "facet_facts": tuple(facts),
            "noun": "" if film else schema.item_noun}


def _moods_met(item: Item, state: DialogueState, roles: Roles) -> tuple[tuple[str, str], ...]:
    names = state.moods
    if not names:
        return ()
    from agent.understand.vocabulary import load_vocabulary

    moods = load_vocabulary().moods
    out = []
    for name in names:
        genre = next((g for g in roles.genres_of(item)
                      if name in moods and g in moods[name].any_genres), None)
        if genre:
            out.append((name, genre))
    return tuple(out)
