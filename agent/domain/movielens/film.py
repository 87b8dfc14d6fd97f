"""A MovieLens item from its film fields by position (tests, demonstrations, the
reference table's films): ``film(1, "Alien", 1979, ("Horror", "Sci-Fi"))``."""

from __future__ import annotations

from functools import lru_cache

from agent.domain.roles import Roles
from agent.domain.schema import CatalogSchema
from agent.types import Item


def film(id: int, title: str, year: int | None = None, genres=(), director=(), cast=(),
         runtime: int | None = None, country: str | None = None,
         language: str | None = None, popularity: int = 0) -> Item:
    """An item with the MovieLens schema's fields (empty ones left out).

    >>> film(1, "Alien", 1979, ("Horror", "Sci-Fi")).values("genres")
    ('Horror', 'Sci-Fi')
    """
    return Item(id, title, {"year": year, "genres": tuple(genres), "director": tuple(director),
                            "cast": tuple(cast), "runtime": runtime, "country": country,
                            "language": language}, popularity)


@lru_cache(maxsize=1)
def film_roles() -> Roles:
    """The MovieLens schema's roles: what the film rules read when no catalog is named."""
    from agent.domain.movielens import SCHEMA

    return CatalogSchema.load(SCHEMA).roles


def credits(item: Item, roles: Roles | None = None) -> tuple[str, ...]:
    """Everyone credited on ``item`` (``roles``: the catalog's; default MovieLens'): its
    directors, then its cast.

    >>> credits(film(1, "Alien", 1979, (), ("Ridley Scott",), ("Sigourney Weaver",)))
    ('Ridley Scott', 'Sigourney Weaver')
    """
    return (roles if roles is not None else film_roles()).credits(item)
