"""Plain data shared across the agent: items, candidates, dialogue state, replies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Item:
    """One catalog item: its id and name, and its other fields by the catalog schema's
    names (MovieLens: year, genres, director, cast, runtime, country, language; a shop:
    price, brand, colour ...). Lists become tuples; empty fields are left out, so an
    item carries only what its catalog has (``agent.domain.movielens.film`` makes a
    film)."""

    id: int
    title: str
    attrs: dict = field(default_factory=dict, hash=False)
    popularity: int = 0
    external_id: str | None = None  # an imported catalog's own id (a SKU); None for MovieLens

    def __post_init__(self):
        object.__setattr__(self, "attrs", {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.attrs.items()
            if v is not None and v != "" and v != () and v != []})

    @property
    def label(self) -> str:
        """Title with year where it has one, as shown to users: ``Alien (1979)``."""
        year = self.attrs.get("year")
        return f"{self.title} ({year})" if year else self.title

    def value(self, name: str):
        """A field by its schema name (None when the item has none).

        >>> Item(1, "Alien", {"year": 1979}).value("year"), Item(1, "Alien").value("year")
        (1979, None)
        """
        if name in self.attrs:
            return self.attrs[name]
        return getattr(self, name) if name in _OWN_FIELDS else None

    def values(self, name: str) -> tuple:
        """``value(name)`` as a tuple: a list's values, one value alone, none when empty.

        >>> Item(1, "Alien", {"genres": ["Horror", "Sci-Fi"]}).values("genres")
        ('Horror', 'Sci-Fi')
        >>> Item(1, "Alien", {"brand": "Nike"}).values("brand")
        ('Nike',)
        """
        v = self.value(name)
        return v if isinstance(v, tuple) else () if v is None else (v,)

    def with_values(self, **values) -> Item:
        """A copy with these fields set (None clears one).

        >>> Item(1, "Alien", {"year": 1979}).with_values(runtime=117).attrs
        {'year': 1979, 'runtime': 117}
        """
        return replace(self, attrs={**self.attrs, **values})

    def to_dict(self) -> dict:
        """The item as its ``items.jsonl`` record: one flat object.

        >>> alien = Item(1, "Alien", {"year": 1979, "genres": ["Horror"]})
        >>> alien.to_dict()["genres"], Item.from_dict(alien.to_dict()) == alien
        (['Horror'], True)
        """
        return {"id": self.id, "title": self.title, **{k: list(v) if isinstance(v, tuple)
                else v for k, v in self.attrs.items()}, "popularity": self.popularity,
                "external_id": self.external_id}

    @classmethod
    def from_dict(cls, d: dict) -> Item:
        """An item from its ``items.jsonl`` record: every field but its id, title,
        popularity and external id goes to ``attrs``."""
        return cls(id=int(d["id"]), title=d["title"],
                   attrs={k: v for k, v in d.items() if k not in _OWN_FIELDS and k != "head"},
                   popularity=int(d.get("popularity", 0)), external_id=d.get("external_id"))


_OWN_FIELDS = frozenset(("id", "title", "attrs", "popularity", "external_id"))


def _tuples(value):
    """JSON's lists back as tuples, nested ones too (a state must stay hashable).

    >>> _tuples([["price", None, 50]])
    (('price', None, 50),)
    """
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Candidate:
    """An item proposed by retrieval, with where it came from and how strongly."""

    item_id: int
    score: float
    sources: tuple[str, ...]
    semantic: float | None = None
    cowatch: float | None = None
    sequential_rank: int | None = None  # its place in the sequence model's list (0 = first)


@dataclass(frozen=True)
class DialogueState:
    """What the user has told us so far. Immutable: each turn makes a new one.

    The film slots (genres, years, people, moods ...) hold what the film rules read; they
    are about the fields the catalog schema's roles are on (``agent.domain.roles``), and
    mean nothing for a catalog without roles. Any catalog's own facets are in ``facets``,
    ``excluded_facets`` and ``bounds``."""

    liked: tuple[int, ...] = ()
    disliked: tuple[int, ...] = ()
    genres: tuple[str, ...] = ()
    excluded_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    shown: tuple[int, ...] = ()
    query: str = ""
    tail_boost: float | None = None  # the user's long-tail preference; None: the default
    last: tuple[int, ...] = ()  # the last answer's picks, in order ("the second one")
    genre_or: bool = False  # "comedy or drama": any of ``genres``; by default all of them
    people: tuple[str, ...] = ()  # credited directors/cast asked for (any of them)
    excluded_people: tuple[str, ...] = ()  # "nothing by Tarantino": none of their films
    moods: tuple[str, ...] = ()  # vocabulary moods ("cozy"): each is an any-of genre group
    like_genres: tuple[str, ...] = ()  # any of these: genres of named titles outside the catalog
    outside: tuple[str, ...] = ()  # those titles, as found in the reference film table
    not_found: tuple[str, ...] = ()  # titles named this turn that nothing knows
    lesser_known: bool = False  # "hidden gems": no head items unless nothing else fits
    well_liked: bool = False  # "surprise me", "the best": a quality prior from ratings
    # An imported catalog's own facets (agent.understand.facets): (field, value) pairs
    # wanted ("blue", "wool": any of a field's values, all of the fields) and excluded
    # ("no leather", "not Nike"), and (field, low, high) bounds of ranges ("under 50").
    facets: tuple[tuple[str, str], ...] = ()
    excluded_facets: tuple[tuple[str, str], ...] = ()
    bounds: tuple[tuple[str, float | None, float | None], ...] = ()

    def with_changes(self, **kw) -> DialogueState:
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> dict:
        """``to_dict`` with lists for tuples (what JSON round-trips to)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, d: dict) -> DialogueState:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown state fields: {sorted(unknown)}")
        return cls(**{k: _tuples(v) for k, v in d.items()})


@dataclass(frozen=True)
class Recommendation:
    """One recommended catalog item with its ranking scores and explanation."""

    item: Item
    score: float
    explanation: str
    explanation_source: str  # "llm" or "template"
    retrieval_score: float = 0.0
    llm_score: float | None = None
    # The catalog schema's fact fields of the item (``CatalogSchema.facts_of``)
    facts: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Reply:
    """The agent's answer to one user message."""

    text: str
    recommendations: tuple[Recommendation, ...]
    state: DialogueState
    notices: tuple[str, ...] = ()
    timings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The shape ``tailor ask --json`` prints and the API returns."""
        return {
            "text": self.text,
            "items": [
                {
                    "id": r.item.id,
                    "title": r.item.title,
                    "year": r.item.value("year"),
                    "genres": list(r.item.values("genres")),
                    "director": list(r.item.values("director")),
                    "external_id": r.item.external_id,
                    "attrs": dict(r.item.attrs),
                    "facts": dict(r.facts),
                    "score": round(r.score, 4),
                    "explanation": r.explanation,
                    "explanation_source": r.explanation_source,
                }
                for r in self.recommendations
            ],
            "state": self.state.to_json(),
            "notices": list(self.notices),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass(frozen=True)
class TurnEvent:
    """One step of a streamed turn (``Recommender.turn_stream``).

    ``kind`` is ``"picks"`` (the items are chosen; explanations still to come, so
    each is ``""`` with source ``"pending"``), ``"draft"`` (pick ``index``'s
    explanation so far, already checked against the catalog; a draft that fails
    the check is replaced by the factual template) or ``"final"`` (the finished
    reply, the same ``turn`` returns).
    """

    kind: str
    reply: Reply
    index: int = -1
    text: str = ""
