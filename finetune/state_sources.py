"""What the synthetic state requests draw on (``finetune.state_data``): the catalog's
titles and credited people, well-known titles it lacks, and a seeded split of them so
validation asks about values training never saw."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Sources:
    """The catalog values the templates draw on (popular ones listed more than once)."""

    titles: tuple[str, ...]
    people: tuple[str, ...]  # cast
    directors: tuple[str, ...]
    outside: tuple[str, ...]  # well-known titles the catalog lacks
    title_index: object  # agent.understand.linking.TitleIndex over the whole catalog
    people_index: object  # agent.understand.people.PeopleIndex
    reference: object = None  # agent.domain.movielens.reference.ReferenceFilms for ``outside``


def catalog_sources(items, outside=(), reference=None, min_films: int = 2) -> Sources:
    """Titles and people from ``items``; people need ``min_films`` films (a name a user
    would know). The most watched titles and people appear more often."""
    from agent.understand.linking import TitleIndex
    from agent.understand.people import PeopleIndex

    titles, people, directors = [], {}, {}
    for it in items:
        title = re.sub(r"\s*\(.*\)$", "", it.title).strip()
        if title and title.lower() != "unknown":
            titles += [title] * (1 + min(3, it.popularity // 150))
        for p in it.values("cast")[:4]:
            people[p] = people.get(p, 0) + 1
        for p in it.values("director"):
            directors[p] = directors.get(p, 0) + 1
    return Sources(tuple(titles), tuple(p for p, n in people.items() if n >= min_films),
                   tuple(p for p, n in directors.items() if n >= min_films), tuple(outside),
                   TitleIndex(list(items)), PeopleIndex(list(items)), reference)


def split_sources(src: Sources, val_share: float, seed: int) -> tuple[Sources, Sources]:
    """Two disjoint halves of the titles and people (by a seeded hash), so validation
    asks about values training never saw."""
    def side(value: str) -> bool:
        return random.Random(f"{seed}:{value}").random() < val_share

    def part(values, val):
        return tuple(v for v in values if side(v) == val)

    return tuple(Sources(part(src.titles, v), part(src.people, v), part(src.directors, v),
                         part(src.outside, v), src.title_index, src.people_index, src.reference)
                 for v in (False, True))


def outside_titles(db_path, title_index) -> list[str]:
    """Well-known titles the catalog lacks (an Oscar or a Metacritic score of 70+), from
    the reference film table."""
    from agent.domain.movielens.facts import film_table_rows, title_key

    rows = film_table_rows(db_path, "SELECT Title FROM omdb WHERE Oscars > 0 OR Metacritic >= 70 "
                                    "ORDER BY Title")
    return [t for (t,) in rows if t and title_key(t) and title_key(t) not in title_index.by_key]
