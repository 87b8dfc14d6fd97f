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

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from agent.errors import ConfigError

FACET_KINDS = ("category", "range", "entity")
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
    """

    field: str
    kind: str
    multi: bool = False
    fact: bool = True
    label: str = ""
    unit: str = ""

    def __post_init__(self):
        if self.kind not in FACET_KINDS:
            raise ConfigError(f"facet {self.field!r}: kind must be one of "
                              f"{', '.join(FACET_KINDS)}, not {self.kind!r}")
        if self.kind == "range" and self.multi:
            raise ConfigError(f"facet {self.field!r}: a range holds one number, not a list")

    @property
    def name(self) -> str:
        return self.label or self.field.replace("_", " ")


@dataclass(frozen=True)
class ItemFields:
    id: str
    title: str
    text: tuple[str, ...] = ()  # joined into the embedding document, after the title


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

    def __post_init__(self):
        names = [f.field for f in self.facets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"schema {self.name!r}: facet(s) listed twice: {', '.join(dup)}")
        if self.items.id in names or self.items.title in names:
            raise ConfigError(f"schema {self.name!r}: the id and title fields are not facets")

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
    def facts(self) -> tuple[Facet, ...]:
        """The facets an explanation may state."""
        return tuple(f for f in self.facets if f.fact)

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
        d["facets"] = [{k: v for k, v in asdict(f).items() if v not in ("", None)
                        or k in ("field", "kind")} for f in self.facets]
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


def schema_path(folder: Path) -> Path:
    return folder / SCHEMA_FILE

