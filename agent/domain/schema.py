"""The catalog schema: what a dataset's fields mean, in one YAML file per dataset.

It names the item id and title fields, the text fields of the embedding document, the
facets (categorical: genre, category, colour, lists allowed; ranges: year, price;
entities: director, cast, brand) and which of them are facts an explanation may state.
A shop's schema is inferred at import (``agent.data.imports``) and written beside its
dataset as editable YAML; MovieLens ships one (``agent/domain/movielens/schema.yaml``).

>>> s = CatalogSchema.from_dict({"name": "shop", "item_noun": "product",
...     "items": {"id": "sku", "title": "name", "text": ["name"]},
...     "facets": [{"field": "price", "kind": "range", "unit": "EUR"}]})
>>> s.facet("price").kind, s.ranges[0].unit, s.categories
('range', 'EUR', ())
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.domain.roles import Roles

FACET_KINDS = ("category", "range", "entity")
# The film dialogue rules a facet's role turns on, and the kind of facet each reads:
# "genre" genre words and moods (a category), "year" decades and "older" (a range),
# "director"/"cast"/"people" fuzzy names ("films with Tom Hanks"; an entity: the
# explanations say "directed", "is in" or "is credited on").
ROLE_KINDS = {"genre": "category", "year": "range", "director": "entity", "cast": "entity",
              "people": "entity"}
FACET_ROLES = ("", *ROLE_KINDS)
PEOPLE_ROLES = ("director", "cast", "people")
SCHEMA_FILE = "schema.yaml"


def _strict(cls, data: dict, where: str) -> dict:
    """``data`` checked against ``cls``'s fields: an unknown key is an error, not ignored."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    return data


@dataclass(frozen=True)
class Facet:
    """One filterable field of an item.

    ``kind``: ``category`` (values from a set; ``multi``: a list, written
    ``a|b`` in CSV), ``range`` (a number: year, price) or ``entity`` (names of
    people or makers, matched fuzzily in requests: director, brand).
    ``fact``: an explanation may state it. ``label``: how a reply names it.
    ``filter``: the Chroma index carries it as metadata for ``where`` filters (a
    category as one boolean flag per value, keyed ``<key>_<value>``; a range as its
    number). ``values``: the category's allowed values (default: those the items have).
    ``missing``: values in the files that mean "not known" (as pandas' ``na_values``):
    an item with one has no value for the facet, where a range would reject it.
    ``role``: which of the film dialogue rules reads it, whatever the field is called
    ("genre": genre words and moods, "year": decades and "older", "director", "cast" or
    "people": fuzzy names; ``Roles``); a facet without one is read
    from requests by its own values ("a blue wool jumper", "no leather", "under 50",
    ``agent.understand.facets``). When too few items fit a request, its facet values are
    let go from the facet listed last up: list first what an item is (a category).
    ``similarity``: how much sharing this facet's values with a liked item counts when
    the content source compares items (a category: the Jaccard of the two items' values
    times it; an entity: it, when they share any name). Unset: 1 for the first filterable
    category (what an item is), 0.5 for a later one and for an entity, 0 otherwise
    (ranges are not compared); ``CatalogSchema.weights``.
    """

    field: str
    kind: str
    multi: bool = False
    fact: bool = True
    label: str = ""
    unit: str = ""
    filter: bool = True
    key: str = ""  # the metadata key (prefix, for categories); default the field name
    values: tuple[str, ...] = ()
    role: str = ""
    missing: tuple[str, ...] = ()
    similarity: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "missing", tuple(str(v) for v in self.missing))
        if self.kind not in FACET_KINDS:
            raise ConfigError(f"facet {self.field!r}: kind must be one of "
                              f"{', '.join(FACET_KINDS)}, not {self.kind!r}")
        if self.role not in FACET_ROLES:
            raise ConfigError(f"facet {self.field!r}: role must be one of "
                              f"{', '.join(r for r in FACET_ROLES if r)} or none, not "
                              f"{self.role!r}")
        if self.kind == "range" and self.multi:
            raise ConfigError(f"facet {self.field!r}: a range holds one number, not a list")
        if self.role and ROLE_KINDS[self.role] != self.kind:
            raise ConfigError(f"facet {self.field!r}: role {self.role!r} reads a "
                              f"{ROLE_KINDS[self.role]} facet, not a {self.kind}")
        if self.role in ("genre", "year") and not self.filter:
            raise ConfigError(f"facet {self.field!r}: role {self.role!r} filters the index "
                              "by it, so it needs filter: true")
        if self.similarity is not None and (
                isinstance(self.similarity, bool) or not isinstance(self.similarity, (int, float))
                or not 0 <= self.similarity <= 10 or self.kind == "range" and self.similarity):
            raise ConfigError(f"facet {self.field!r}: similarity must be a number from 0 to 10"
                              f" (0 for a range), not {self.similarity!r}")

    @property
    def name(self) -> str:
        return self.label or self.field.replace("_", " ")


@dataclass(frozen=True)
class ItemFields:
    id: str
    title: str
    text: tuple[str, ...] = ()  # joined into the embedding document, after the label
    label: str = ""  # how an item is shown, e.g. "{title} ({year})"; default the title


@dataclass(frozen=True)
class InteractionFields:
    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    rating: str | None = None


@dataclass(frozen=True)
class CatalogSchema:
    name: str
    items: ItemFields
    interactions: InteractionFields = InteractionFields()
    facets: tuple[Facet, ...] = ()
    item_noun: str = "item"  # "film", "product": how replies name one item
    separator: str = "|"  # between the values of a multi-valued field in CSV
    vocabulary: str | None = None  # request words (moods, concepts), beside this file
    # The embedding document after the label and the text fields: one template per
    # sentence, "{field}" for its values ("{cast:8}": the first 8); a sentence whose
    # fields are empty is left out. Default: "<Facet>: <values>." for each fact.
    document: tuple[str, ...] | None = None

    def __post_init__(self):
        names = [f.field for f in self.facets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"schema {self.name!r}: facet(s) listed twice: {', '.join(dup)}")
        if self.items.id in names or self.items.title in names:
            raise ConfigError(f"schema {self.name!r}: the id and title fields are not facets")
        for role in ("genre", "year"):
            bound = [f.field for f in self.facets if f.role == role]
            if len(bound) > 1:
                raise ConfigError(f"schema {self.name!r}: role {role!r} is on "
                                  f"{' and '.join(bound)}; one facet at most")

    @cached_property
    def roles(self) -> Roles:
        """Which fields the film rules read (``agent.domain.roles.Roles``)."""
        from agent.domain.roles import Roles

        return Roles.of(self)

    def facet(self, name: str) -> Facet:
        for f in self.facets:
            if f.field == name:
                return f
        raise KeyError(name)

    def _of(self, kind: str) -> tuple[Facet, ...]:
        return tuple(f for f in self.facets if f.kind == kind)

    @property
    def categories(self) -> tuple[Facet, ...]:
        return self._of("category")

    @property
    def ranges(self) -> tuple[Facet, ...]:
        return self._of("range")

    @property
    def entities(self) -> tuple[Facet, ...]:
        return self._of("entity")

    @property
    def requestable(self) -> tuple[Facet, ...]:
        """The facets a request names by their own values: filterable, with no film role."""
        return tuple(f for f in self.facets if f.filter and not f.role)

    @property
    def weights(self) -> dict[str, float]:
        """Each facet's ``similarity``, or its default (``Facet``'s docstring).

        >>> CatalogSchema.from_dict({"name": "s", "items": {"id": "i", "title": "t"},
        ...     "facets": [{"field": "category", "kind": "category"},
        ...                {"field": "colour", "kind": "category"},
        ...                {"field": "brand", "kind": "entity"},
        ...                {"field": "price", "kind": "range"}]}).weights
        {'category': 1.0, 'colour': 0.5, 'brand': 0.5, 'price': 0.0}
        """
        out, first = {}, True
        for f in self.facets:
            if f.similarity is not None:
                out[f.field] = float(f.similarity)
            elif f.kind == "category" and f.filter:
                out[f.field], first = (1.0 if first else 0.5), False
            else:
                out[f.field] = 0.5 if f.kind == "entity" else 0.0
        return out

    @property
    def compared(self) -> tuple[Facet, ...]:
        """The facets the content source compares items by (a positive weight)."""
        weights = self.weights
        return tuple(f for f in self.facets if weights[f.field] > 0)

    @property
    def kind_facet(self) -> Facet | None:
        """What an item is, for variety among picks: the first compared category (MovieLens:
        genres; a shop: its category), or None."""
        return next((f for f in self.compared if f.kind == "category"), None)

    @property
    def facts(self) -> tuple[Facet, ...]:
        """The facets an explanation may state."""
        return tuple(f for f in self.facets if f.fact)

    def facts_of(self, get) -> dict:
        """An item's fact fields by name, empty ones left out (``get``: field name ->
        value): what the API and the cards show of an item, the same shape for any
        catalog (MovieLens: year, genres, director ...; a shop: price, brand ...)."""
        out = {}
        for f in self.facts:
            value = get(f.field)
            if isinstance(value, tuple):
                value = list(value)
            if value not in (None, "", []):
                out[f.field] = value
        return out

    # --- YAML ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, where: str = "schema") -> CatalogSchema:
        data = dict(_strict(cls, data, where))
        for key in ("name", "items"):
            if key not in data:
                raise ConfigError(f"{where}: missing {key!r}")
        items = dict(_strict(ItemFields, data["items"], f"{where}: items"))
        if "id" not in items or "title" not in items:
            raise ConfigError(f"{where}: items needs 'id' and 'title' (the field names)")
        items["text"] = tuple(items.get("text") or ())
        if data.get("document") is not None:
            data["document"] = tuple(data["document"])
        data["items"] = ItemFields(**items)
        data["interactions"] = InteractionFields(
            **_strict(InteractionFields, data.get("interactions") or {}, f"{where}: interactions"))
        facets = data.get("facets") or []
        if not isinstance(facets, list):
            raise ConfigError(f"{where}: facets must be a list")
        data["facets"] = tuple(Facet(**_strict(Facet, f, f"{where}: facets[{i}]"))
                               for i, f in enumerate(facets))
        try:
            return cls(**data)
        except TypeError as e:  # a required field given as null, say
            raise ConfigError(f"{where}: {e}") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["items"]["text"] = list(self.items.text)
        d["facets"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(f).items()
                        if v not in ("", None, ()) or k in ("field", "kind")}
                       for f in self.facets]
        if self.document is not None:
            d["document"] = list(self.document)
        return d

    @classmethod
    def load(cls, path: Path) -> CatalogSchema:
        import yaml

        if not path.is_file():
            raise ConfigError(f"no schema at {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        return cls.from_dict(data, where=str(path))

    def dump(self, path: Path, header: str = "") -> None:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        path.write_text(header + text, encoding="utf-8")

    def vocabulary_path(self, folder: Path) -> Path | None:
        return folder / self.vocabulary if self.vocabulary else None

    # --- what the index and the replies read ------------------------------------------
    def label_of(self, get) -> str:
        """How an item is shown (``get``: field name -> value). Stored items keep their
        title under ``title`` whatever the source column was called."""
        return (render(self.items.label, get) if self.items.label else None) or str(get("title"))

    def document_of(self, get) -> str:
        """The text embedded for an item: its label, its text fields, then one sentence
        per ``document`` template (or per fact facet)."""
        parts = [self.label_of(get) + "."]
        for name in self.items.text:
            text = str(get(name) or "").strip()
            if text:
                parts.append(text if text[-1] in ".!?" else text + ".")
        templates = self.document_templates
        parts += [s for s in (render(tpl, get) for tpl in templates) if s]
        return " ".join(parts)

    @property
    def document_templates(self) -> tuple[str, ...]:
        if self.document is not None:
            return self.document
        return tuple(f"{f.name[:1].upper()}{f.name[1:]}: {{{f.field}}}." for f in self.facts)

    def metadata_of(self, get, values: dict[str, tuple[str, ...]]) -> dict:
        """Scalar metadata for Chroma ``where`` filters: a range facet's number, a boolean
        flag per value of a category facet (``values``: each category's values)."""
        meta = {}
        for f in self.facets:
            if not f.filter or (f.kind == "entity" and f.field not in values):
                continue
            value = get(f.field)
            if f.kind == "range":
                if value is not None:
                    meta[f.key or f.field] = value
                continue
            have = set(value if isinstance(value, (list, tuple)) else [value])
            meta.update({flag_key(f, v): v in have for v in values.get(f.field, ())})
        return meta


def value_slug(value: str) -> str:
    """``Sci-Fi`` -> ``sci_fi``: a value as part of a metadata key."""
    return re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")


def flag_key(facet: Facet, value: str) -> str:
    """The metadata key of one category value: ``g_sci_fi`` (MovieLens' genres)."""
    return f"{facet.key or facet.field}_{value_slug(value)}"


_SLOT = re.compile(r"\{(\w+)(?::(\d+))?\}")


def _text(value, most: int | None) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v, None) for v in list(value)[:most])
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render(template: str, get) -> str | None:
    """``template`` with each ``{field}`` replaced by its value(s); None when one is empty.

    >>> render("Directed by {director}.", {"director": ["A", "B"]}.get)
    'Directed by A, B.'
    >>> render("Cast: {cast:1}.", {"cast": ["A", "B"]}.get), render("{year}", {}.get)
    ('Cast: A.', None)
    """
    missing = False

    def fill(m):
        nonlocal missing
        value = get(m.group(1))
        if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
            missing = True
            return ""
        return _text(value, int(m.group(2)) if m.group(2) else None)

    out = _SLOT.sub(fill, template)
    return None if missing else out


def schema_path(folder: Path) -> Path:
    return folder / SCHEMA_FILE

