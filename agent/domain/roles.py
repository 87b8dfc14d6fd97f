"""Which of a catalog's fields the film rules read: the schema's roles, by field name."""

from __future__ import annotations

from dataclasses import dataclass

from agent.domain.schema import PEOPLE_ROLES, value_slug


@dataclass(frozen=True)
class Roles:
    """The fields a catalog's film roles are on, and the index keys they filter by: what
    the film rules (genre words, decades, fuzzy names, the film explanations) read of an
    item, so a film catalog may call its columns ``genre``, ``release_year`` or ``actors``.
    A catalog without roles (a shop) has none, and the rules find nothing to read.

    >>> r = Roles(genre="genre", genre_key="genre", year="release_year",
    ...           people=(("directors", "director"), ("actors", "cast")))
    >>> from agent.types import Item
    >>> it = Item(1, "Alien", {"genre": ["Sci-Fi"], "release_year": 1979,
    ...                        "directors": ["Ridley Scott"], "actors": ["Sigourney Weaver"]})
    >>> r.genres_of(it), r.year_of(it), r.credits(it), r.flag("Sci-Fi")
    (('Sci-Fi',), 1979, ('Ridley Scott', 'Sigourney Weaver'), 'genre_sci_fi')
    >>> r.credited(it)
    [('Ridley Scott', 'director'), ('Sigourney Weaver', 'cast')]
    """

    genre: str | None = None
    genre_key: str = ""  # the prefix of its flags in the index ("g": "g_sci_fi")
    year: str | None = None
    year_key: str = ""  # its number's key in the index
    people: tuple[tuple[str, str], ...] = ()  # (field, "director" | "cast" | "people")

    @classmethod
    def of(cls, schema) -> Roles:
        genre = next((f for f in schema.facets if f.role == "genre"), None)
        year = next((f for f in schema.facets if f.role == "year"), None)
        return cls(genre.field if genre else None, (genre.key or genre.field) if genre else "",
                   year.field if year else None, (year.key or year.field) if year else "",
                   tuple((f.field, f.role) for f in schema.facets if f.role in PEOPLE_ROLES))

    @property
    def films(self) -> bool:
        """Whether any film role is bound: the catalog is one of films."""
        return bool(self.genre or self.year or self.people)

    def genres_of(self, item) -> tuple:
        return item.values(self.genre) if self.genre else ()

    def year_of(self, item):
        return item.value(self.year) if self.year else None

    def credited(self, item) -> list[tuple[str, str]]:
        """Everyone credited on ``item`` with their role, directors first as listed."""
        return [(name, role) for field, role in self.people for name in item.values(field)]

    def credits(self, item) -> tuple[str, ...]:
        return tuple(name for name, _ in self.credited(item))

    def flag(self, genre: str) -> str:
        """The index key of one genre's flag (``flag_key``)."""
        return f"{self.genre_key}_{value_slug(genre)}"
