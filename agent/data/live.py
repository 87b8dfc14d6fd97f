"""Items and interactions that arrive while Tailor runs (the API's catalog endpoints).

Each change is appended to a log beside the dataset (``updates.jsonl`` for items,
``interactions.jsonl`` for interactions) and flushed to disk before the API answers, so
nothing acknowledged is lost; ``Catalog.load`` replays the item log, so a restart or a
second process sees the same catalog. An upserted item is searchable at once (Chroma
upsert); a hidden one is never recommended again (left out of every source and deleted
from the index); a facet value no item had before (a new brand) can be asked for from the
next turn. The collaborative stages learn the new interactions when `tailor retrain`
merges the log and refits them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from agent.errors import InputError
from agent.types import Item

UPDATES, INTERACTIONS = "updates.jsonl", "interactions.jsonl"


def append_record(path: Path, record: dict) -> None:
    """One JSON line, on disk (fsync) before this returns."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path) -> list[dict]:
    """The log's records; a torn last line (a crash mid-write, never acknowledged) is
    skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def apply_updates(catalog, folder: Path) -> None:
    """Replay ``updates.jsonl`` onto ``catalog`` (``Catalog.load`` calls it)."""
    for rec in read_records(folder / UPDATES):
        if rec.get("op") == "upsert":
            _put(catalog, rec["record"])
        elif rec.get("op") == "hide":
            catalog.hidden.add(int(rec["id"]))


def _put(catalog, record: dict) -> Item:
    old = catalog.items.get(record["id"])
    item = Item.from_dict({**record, "popularity": old.popularity if old else 0})
    catalog.items[item.id] = item
    catalog.hidden.discard(item.id)
    return item


class LiveCatalog:
    """Upserts, hides and interactions on a loaded catalog and its index, logged."""

    def __init__(self, catalog, folder: Path, collection=None, embedder=None):
        self.catalog, self.folder = catalog, Path(folder)
        self.collection, self.embedder = collection, embedder
        self._lock = threading.Lock()
        # external id -> internal id (a MovieLens item's external id is its plain id)
        self._ids = {it.external_id or str(it.id): it.id for it in catalog.items.values()}

    def item_id(self, external_id: str) -> int | None:
        return self._ids.get(external_id)

    def upsert(self, external_id: str, fields: dict) -> tuple[Item, bool]:
        """Add or replace the item ``external_id`` from ``fields`` (the schema's field
        names, as in the import file); returns it and whether it is new."""
        from agent.data.imports import convert_items
        from agent.data.tables import DataFileError, Table

        schema = self.catalog.schema
        known = {schema.items.id, schema.items.title, *schema.items.text,
                 *(f.field for f in schema.facets)}
        unknown = sorted(set(fields) - known)
        if unknown:  # a misspelt field would otherwise be dropped without a word
            raise InputError(f"unknown field(s) {', '.join(unknown)}; the catalog schema has "
                             f"{', '.join(sorted(known))}")
        row = {**fields, schema.items.id: external_id}
        try:
            record = convert_items(Table(Path("request"), list(row), [row], [1]), schema)[0]
        except DataFileError as e:
            raise InputError(str(e).replace("request line 1, ", "")) from None
        with self._lock:
            known = self.item_id(external_id)
            record["id"] = known if known is not None else self.catalog.max_id + 1
            old = self.catalog.items.get(record["id"])
            if old is not None and not old.external_id:
                record.pop("external_id", None)  # a MovieLens item keeps its plain id
            append_record(self.folder / UPDATES, {"op": "upsert", "record": record,
                                                  "at": time.time()})
            item = _put(self.catalog, record)
            self._ids[external_id] = item.id
            self.catalog.note_values(item)
            self._index(item)
        return item, known is None

    def hide(self, external_id: str) -> Item:
        with self._lock:
            item_id = self.item_id(external_id)
            if item_id is None:
                raise KeyError(external_id)
            append_record(self.folder / UPDATES, {"op": "hide", "id": item_id, "at": time.time()})
            self.catalog.hidden.add(item_id)
            if self.collection is not None:
                self.collection.delete(ids=[str(item_id)])
        return self.catalog.items[item_id]

    def add_interaction(self, user: str, external_id: str, timestamp: int | None = None,
                        rating: float | None = None) -> None:
        if self.item_id(external_id) is None:
            raise KeyError(external_id)
        append_record(self.folder / INTERACTIONS, {
            "user": user, "item": external_id, "rating": rating,
            "timestamp": int(time.time()) if timestamp is None else int(timestamp)})

    def _index(self, item: Item) -> None:
        if self.collection is None:
            return
        from agent.retrieve.index import item_document, item_metadata

        doc = item_document(item, self.catalog.schema)
        meta = item_metadata(item, item.id in self.catalog.head, self.catalog.schema,
                             self.catalog.facet_values)
        self.collection.upsert(ids=[str(item.id)], documents=[doc], metadatas=[meta],
                               embeddings=self.embedder.encode([doc]))
