"""``tailor import``: a shop's own items and interactions, as one dataset under the data home.

The files are read (``agent.data.tables``), the schema is given or inferred
(``infer_schema``), every row is checked against it, and the dataset is written to a
temporary folder that replaces ``data/<name>`` only when all of it is written: a failed
import leaves the previous dataset as it was. External ids (a shop's SKUs) are kept on
every item and user; inside, items and users are numbered from 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from agent.data.tables import DataFileError, Table, read_table
from agent.domain.schema import (SCHEMA_FILE, CatalogSchema, Facet, InteractionFields,
                                 ItemFields)
from agent.errors import InputError
from agent.settings import DATASETS as BUILT_IN

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
ID_NAMES = ("item_id", "itemid", "id", "sku", "product_id", "productid", "movie_id", "asin")
TITLE_NAMES = ("title", "name", "product_name", "item_name", "movie_title")
USER_NAMES = ("user_id", "userid", "user", "customer_id", "customerid", "visitor_id")
TIME_NAMES = ("timestamp", "time", "ts", "date", "datetime", "event_time", "created_at")
RATING_NAMES = ("rating", "score", "stars")
ENTITY_NAMES = ("brand", "author", "director", "cast", "artist", "maker", "manufacturer",
                "publisher", "studio", "actors", "creator")
MAX_CATEGORY_VALUES = 60  # a text column with more distinct values is free text, not a facet
# A column of numbers but for at most this share of its values, in at most MAX_MISSING
# distinct words ("unknown", "n/a"), is a range whose odd words mean "not known": the
# inferred schema lists them under the facet's ``missing``, where a user sees and edits them.
MISSING_SHARE, MAX_MISSING = 0.01, 3


def check_name(name: str) -> str:
    if name in BUILT_IN:
        raise InputError(f"{name!r} is a built-in dataset (`tailor data {name}`); "
                         "import under another name")
    if not NAME.match(name):
        raise InputError(f"dataset name {name!r}: use 1-40 lower-case letters, digits, '-' "
                         "or '_', starting with a letter or digit")
    return name


# --- inferring a schema ---------------------------------------------------------------
def _pick(columns, names) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def _is_number(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(str(v))
        return True
    except ValueError:
        return False


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or v == []


def _facet_for(column: str, values: list, table: Table, sep: str) -> Facet | None:
    """The facet ``column`` looks like, or None when it is free text."""
    entity = column.lower() in ENTITY_NAMES
    kind = table.types.get(column)
    if kind in ("float", "float_seq"):
        return Facet(column, "range") if kind == "float" else None
    odd = _odd_words(values) if kind != "token_seq" else None
    if odd is not None:
        return Facet(column, "range", missing=odd)
    listed = any(isinstance(v, list) for v in values) or any(
        isinstance(v, str) and sep in v for v in values)
    if listed:
        return Facet(column, "entity" if entity else "category", multi=True)
    distinct = {str(v).strip() for v in values}
    if entity:
        return Facet(column, "entity")
    if len(distinct) <= MAX_CATEGORY_VALUES and len(distinct) <= max(2, len(values) // 2):
        return Facet(column, "category")
    return None


def _odd_words(values: list) -> tuple[str, ...] | None:
    """The words of a column of numbers that are not numbers (``()``: none), or None
    when the column is not one of numbers (see ``MISSING_SHARE``).

    >>> _odd_words(["1995"] * 200 + ["unknown", "V"]), _odd_words([1, 2.5]), _odd_words(["a", 1])
    (('V', 'unknown'), (), None)
    """
    if not values or any(isinstance(v, (list, bool)) for v in values):
        return None
    odd = [str(v).strip() for v in values if not _is_number(v)]
    if len(odd) > MISSING_SHARE * len(values) or len(set(odd)) > MAX_MISSING:
        return None
    return tuple(sorted(set(odd)))


def infer_schema(name: str, items: Table, interactions: Table, sep: str = "|") -> CatalogSchema:
    """A schema from the files themselves: RecBole's typed headers where present, else
    names and values (a numeric column becomes a range, a ``|``-separated or
    low-cardinality text column a category, the first text column with unique values
    the title)."""
    id_col = _pick(items.columns, ID_NAMES) or _unique_column(items, numeric_ok=True)
    if id_col is None:
        raise DataFileError(f"{items.path.name}: no column looks like the item id (looked for "
                            f"{', '.join(ID_NAMES)}, then a column of unique values); name "
                            "it in a schema and pass --schema")
    title_col = _pick([c for c in items.columns if c != id_col], TITLE_NAMES) or _unique_column(
        items, numeric_ok=False, skip=(id_col,))
    if title_col is None:
        raise DataFileError(f"{items.path.name}: no column looks like the title (looked for "
                            f"{', '.join(TITLE_NAMES)}, then a text column of unique "
                            "values); name it in a schema and pass --schema")
    facets, text = [], []
    for c in items.columns:
        if c in (id_col, title_col):
            continue
        values = [r.get(c) for r in items.rows if not _blank(r.get(c))]
        facet = _facet_for(c, values, items, sep)
        if facet is not None:
            facets.append(facet)
        elif values:
            text.append(c)
    return CatalogSchema(name=name, items=ItemFields(id_col, title_col, tuple(text)),
                         interactions=infer_interaction_fields(interactions, id_col),
                         facets=tuple(facets), separator=sep)


def _unique_column(table: Table, numeric_ok: bool, skip=()) -> str | None:
    for c in table.columns:
        if c in skip:
            continue
        values = [r.get(c) for r in table.rows]
        if any(_blank(v) or isinstance(v, list) for v in values):
            continue
        if not numeric_ok and all(_is_number(v) for v in values):
            continue
        if len({str(v) for v in values}) == len(values):
            return c
    return None


def infer_interaction_fields(table: Table, item_id: str) -> InteractionFields:
    cols = table.columns
    found = {"user": _pick(cols, USER_NAMES),
             "item": item_id if item_id in cols else _pick(cols, ID_NAMES),
             "timestamp": _pick(cols, TIME_NAMES)}
    looked = {"user": USER_NAMES, "item": (item_id,) + ID_NAMES, "timestamp": TIME_NAMES}
    for role, col in found.items():
        if col is None:
            raise DataFileError(
                f"{table.path.name}: no column for the {role} (looked for "
                f"{', '.join(dict.fromkeys(looked[role]))}); its columns are "
                f"{', '.join(cols)}. Name it in a schema's interactions and pass --schema")
    return InteractionFields(rating=_pick(cols, RATING_NAMES), **found)


# --- checking rows against the schema ------------------------------------------------
def _need_columns(table: Table, wanted: list[str], what: str) -> None:
    missing = [c for c in wanted if c and c not in table.columns]
    if missing:
        raise DataFileError(f"{table.path.name}: the schema's {what} field(s) "
                            f"{', '.join(map(repr, missing))} are not columns of the file "
                            f"(its columns: {', '.join(table.columns)})")


def _number(value, where: str, why: str):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise DataFileError(f"{where}: {value!r} is not a number ({why})") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise DataFileError(f"{where}: {value!r} is not a finite number ({why})")
    return int(number) if float(number).is_integer() else float(number)


def _facet_value(facet: Facet, value, sep: str, where: str):
    if _blank(value) or (facet.missing and str(value).strip() in facet.missing):
        return [] if facet.multi else None
    if facet.kind == "range":
        if isinstance(value, list):
            raise DataFileError(f"{where}: a list, but {facet.field} is a range (one number)")
        return _number(value, where, f"the schema makes {facet.field!r} a range facet; if "
                       "the word means 'not known', list it under the facet's missing")
    if isinstance(value, list):
        values = [str(v).strip() for v in value if str(v).strip()]
    else:
        text = str(value)
        values = [v.strip() for v in text.split(sep)] if facet.multi else [text.strip()]
    if not facet.multi:
        if len(values) != 1:
            raise DataFileError(f"{where}: {len(values)} values, but the schema gives "
                                f"{facet.field!r} one (set multi: true for a list)")
        return values[0]
    return [v for v in values if v]


def _text_value(value) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value).strip()


def convert_items(table: Table, schema: CatalogSchema) -> list[dict]:
    """One record per item: internal ``id`` (1..n, file order), ``external_id``, ``title``,
    each facet and text field under its own name."""
    f = schema.items
    _need_columns(table, [f.id, f.title, *f.text, *(x.field for x in schema.facets)], "item")
    out, first = [], {}
    for i, row in enumerate(table.rows):
        ext = _text_value(row.get(f.id)) if not _blank(row.get(f.id)) else ""
        if not ext:
            raise DataFileError(f"{table.where(i, f.id)}: the item has no id")
        if ext in first:
            raise DataFileError(f"{table.where(i, f.id)}: duplicate id {ext!r} (first on "
                                f"{table.where(first[ext]).split(' ', 1)[1]})")
        first[ext] = i
        title = "" if _blank(row.get(f.title)) else _text_value(row[f.title])
        if not title:
            raise DataFileError(f"{table.where(i, f.title)}: item {ext!r} has no title")
        rec = {"id": len(out) + 1, "external_id": ext, "title": title}
        for c in f.text:
            rec[c] = "" if _blank(row.get(c)) else _text_value(row[c])
        for facet in schema.facets:
            rec[facet.field] = _facet_value(facet, row.get(facet.field), schema.separator,
                                            table.where(i, facet.field))
        out.append(rec)
    return out


def _timestamp(value, where: str) -> int:
    if isinstance(value, str) and not _is_number(value):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise DataFileError(f"{where}: {value!r} is neither seconds since 1970 nor an "
                                "ISO date (2024-05-01 or 2024-05-01T13:45:00)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp())
    if _blank(value):
        raise DataFileError(f"{where}: no timestamp")
    return int(_number(value, where, "a timestamp"))


@dataclass
class Interactions:
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    users: list[str]  # external user ids; internal id = position + 1


def convert_interactions(table: Table, schema: CatalogSchema, item_ids: dict[str, int],
                         items_file: str) -> Interactions:
    f = schema.interactions
    _need_columns(table, [f.user, f.item, f.timestamp, f.rating], "interaction")
    users: dict[str, int] = {}
    cols = ([], [], [], [])
    for i, row in enumerate(table.rows):
        user = "" if _blank(row.get(f.user)) else _text_value(row[f.user])
        if not user:
            raise DataFileError(f"{table.where(i, f.user)}: no user id")
        ext = "" if _blank(row.get(f.item)) else _text_value(row[f.item])
        if ext not in item_ids:
            raise DataFileError(f"{table.where(i, f.item)}: item {ext!r} is not in {items_file}")
        rating = (_number(row.get(f.rating), table.where(i, f.rating), "a rating")
                  if f.rating and not _blank(row.get(f.rating)) else 1.0)
        cols[0].append(users.setdefault(user, len(users) + 1))
        cols[1].append(item_ids[ext])
        cols[2].append(rating)
        cols[3].append(_timestamp(row.get(f.timestamp), table.where(i, f.timestamp)))
    return Interactions(np.array(cols[0], dtype=np.int32), np.array(cols[1], dtype=np.int32),
                        np.array(cols[2], dtype=np.float32), np.array(cols[3], dtype=np.int64),
                        list(users))


def convert_users(table: Table | None, inter: Interactions, schema: CatalogSchema) -> list[dict]:
    """One record per user of the interactions: internal ``id``, ``external_id`` and the
    users file's other columns, where it has the user."""
    extra: dict[str, dict] = {}
    if table is not None:
        key = _pick(table.columns, (schema.interactions.user,) + USER_NAMES)
        if key is None:
            raise DataFileError(f"{table.path.name}: no user id column (looked for "
                                f"{schema.interactions.user}, {', '.join(USER_NAMES)})")
        for row in table.rows:
            extra[_text_value(row.get(key))] = {c: v for c, v in row.items() if c != key}
    return [{"id": n, "external_id": ext, **extra.get(ext, {})}
            for n, ext in enumerate(inter.users, 1)]


# --- writing ---------------------------------------------------------------------------
@dataclass
class ImportResult:
    folder: Path
    schema_path: Path
    meta: dict
    inferred: bool


def import_dataset(name: str, data_root: Path, items: Path, interactions: Path,
                   users: Path | None = None, schema: Path | None = None,
                   log=print) -> ImportResult:
    """Read, check and write one dataset; all of it or nothing (see the module doc)."""
    from agent.data.stats import head_tail_split, popularity_counts

    check_name(name)
    item_table, inter_table = read_table(items), read_table(interactions)
    user_table = read_table(users) if users else None
    log(f"read {len(item_table.rows)} items from {item_table.path.name}, "
        f"{len(inter_table.rows)} interactions from {inter_table.path.name}")
    spec = (CatalogSchema.load(Path(schema)) if schema
            else infer_schema(name, item_table, inter_table))
    spec = CatalogSchema.from_dict({**spec.to_dict(), "name": name})
    for facet in spec.facets if not schema else ():
        if facet.missing:
            log(f"{facet.field}: numbers, but for {', '.join(map(repr, facet.missing))}, "
                "read as 'not known' (the facet's missing in the schema)")
    records = convert_items(item_table, spec)
    inter = convert_interactions(inter_table, spec, {r["external_id"]: r["id"] for r in records},
                                 item_table.path.name)
    people = convert_users(user_table, inter, spec)
    counts = popularity_counts(inter.item, [r["id"] for r in records])
    head, threshold = head_tail_split(counts)
    for r in records:
        r["popularity"], r["head"] = counts[r["id"]], r["id"] in head
    meta = {"dataset": name, "source": {"items": str(Path(items).resolve()),
                                        "interactions": str(Path(interactions).resolve()),
                                        "users": str(Path(users).resolve()) if users else None},
            "imported": True, "users": len(people), "items": len(records),
            "rated_items": int(len(np.unique(inter.item))), "interactions": int(len(inter.item)),
            "head_tail": {"head_share_of_interactions": 0.8, "head_items": len(head),
                          "threshold_min_interactions_in_head": threshold}}
    folder = Path(data_root) / name
    header = (f"# The catalog schema of {name!r}, inferred by `tailor import` from "
              f"{item_table.path.name}.\n# Edit it, then import again with --schema "
              "<this file>.\n") if not schema else ""
    write_dataset(folder, records, people, inter, meta, spec, header)
    return ImportResult(folder, folder / SCHEMA_FILE, meta, inferred=not schema)


def write_dataset(folder: Path, records, people, inter, meta: dict,
                  spec: CatalogSchema | None = None, header: str = "") -> None:
    """The one on-disk format of a dataset (MovieLens' too): ``items.jsonl``,
    ``users.jsonl``, ``interactions.npz`` (``inter``: ``user``, ``item``, ``rating``,
    ``timestamp`` arrays), ``meta.json`` and, for an imported one, ``schema.yaml``.
    Written into a sibling temp folder, then swapped in: readers see the old dataset or
    the new one, never half of either."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with open(tmp / "items.jsonl", "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        with open(tmp / "users.jsonl", "w", encoding="utf-8") as f:
            for u in people:
                f.write(json.dumps(u, ensure_ascii=False, default=str) + "\n")
        np.savez(tmp / "interactions.npz", user=inter.user, item=inter.item,
                 rating=inter.rating, timestamp=inter.timestamp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if spec is not None:
            spec.dump(tmp / SCHEMA_FILE, header)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def dataset_schema(folder: Path) -> CatalogSchema:
    """The schema of a prepared dataset: its own file, or MovieLens' shipped one."""
    from agent.domain.movielens import SCHEMA as MOVIELENS_SCHEMA

    path = folder / SCHEMA_FILE
    return CatalogSchema.load(path if path.is_file() else MOVIELENS_SCHEMA)
