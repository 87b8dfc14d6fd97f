"""A MovieLens item from its film fields by position (tests, demonstrations, the
reference table's films): ``film(1, "Alien", 1979, ("Horror", "Sci-Fi"))``."""

from __future__ import annotations

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


def credits(item: Item) -> tuple[str, ...]:
    """Everyone credited on ``item``: its directors, then its cast.

    >>> credits(film(1, "Alien", 1979, (), ("Ridley Scott",), ("Sigourney Weaver",)))
    ('Ridley Scott', 'Sigourney Weaver')
    """
    return (*item.values("director"), *item.values("cast"))
