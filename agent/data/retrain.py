"""Fold the interactions the API logged (``interactions.jsonl``) into the dataset.

``tailor retrain`` merges the log's records into ``interactions.npz``, recounts each
item's popularity and the head/tail split from the merged interactions, adds new users
to ``users.jsonl`` and items added online to ``items.jsonl``, and records in the npz how
many log lines are merged, so a second run merges only what came after. The log itself
is never rewritten: it stays the durable record the API appends to.

Each file is replaced whole (written beside it, then renamed), the npz (data and merged
count together) before ``meta.json``; a crash leaves either the old dataset or the merged
one, and rerunning merges nothing twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from agent.data.live import INTERACTIONS, UPDATES, read_records

MERGED = "merged_log"  # npz entry: how many lines of interactions.jsonl are in the arrays


@dataclass
class Merge:
    """The dataset with the log folded in (in memory until ``write_merge``)."""

    catalog: object  # agent.data.catalog.Catalog over the merged interactions
    log_lines: int  # lines of the log now merged (the npz's MERGED)
    added: int  # interactions added by this merge
    new_users: list[tuple[str, int]] = field(default_factory=list)  # (external, internal)
    skipped: list[str] = field(default_factory=list)  # why a log record was left out
    touched_users: set[int] = field(default_factory=set)  # internal ids with new records


def merged_lines(folder: Path) -> int:
    """Lines of the interaction log already in ``interactions.npz``."""
    with np.load(folder / "interactions.npz") as z:
        return int(z[MERGED]) if MERGED in z.files else 0


def _user_ids(folder: Path) -> dict[str, int]:
    """External user id -> internal id (a MovieLens user's external id is its number)."""
    out = {}
    path = folder / "users.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                out[str(rec.get("external_id", rec["id"]))] = int(rec["id"])
    return out


def merge_log(catalog, folder: Path) -> Merge:
    """``catalog`` with the log's unmerged records appended (``catalog`` is unchanged)."""
    from agent.data.catalog import Catalog
    from agent.data.stats import head_tail_split, popularity_counts

    records = read_records(folder / INTERACTIONS)
    start = merged_lines(folder)
    users = _user_ids(folder)
    items = {it.external_id or str(it.id): it.id for it in catalog.items.values()}
    next_user = max([*users.values(), *catalog.user.tolist(), 0]) + 1
    new_users, skipped, touched = [], [], set()
    base = _base_arrays(catalog)
    # An interaction posted without a rating counts as an average one (an import without
    # a rating column stores 1.0 for every interaction, and that is then the mean).
    neutral = float(np.nanmean(base[2])) if len(base[2]) else 1.0
    cols: tuple[list, list, list, list] = ([], [], [], [])
    for n, rec in enumerate(records[start:], start + 1):
        item = items.get(str(rec.get("item")))
        if item is None:  # the API checks ids, so only a hand-edited log gets here
            skipped.append(f"{INTERACTIONS} record {n}: no item {rec.get('item')!r}")
            continue
        user = str(rec["user"])
        if user not in users:
            users[user] = next_user
            new_users.append((user, next_user))
            next_user += 1
        touched.add(users[user])
        rating = rec.get("rating")
        for col, v in zip(cols, (users[user], item, neutral if rating is None else rating,
                                 rec["timestamp"])):
            col.append(v)
    arrays = [np.concatenate([old, np.asarray(new, dtype=old.dtype)])
              for old, new in zip(base, cols)]
    counts = popularity_counts(arrays[1], list(catalog.items))
    head, threshold = head_tail_split(counts)
    meta = dict(catalog.meta, interactions=int(len(arrays[0])),
                users=int(len(np.unique(arrays[0]))))
    meta["head_tail"] = dict(meta.get("head_tail", {}), head_items=len(head),
                             threshold_min_interactions_in_head=threshold)
    merged = Catalog([replace(it, popularity=counts[it.id]) for it in catalog.items.values()],
                     meta, arrays[0], arrays[1], arrays[3], head, arrays[2], catalog.schema)
    merged.hidden = set(catalog.hidden)
    return Merge(merged, len(records), len(cols[0]), new_users, skipped, touched)


def _base_arrays(catalog) -> list[np.ndarray]:
    rating = catalog.rating if catalog.rating is not None else \
        np.ones(len(catalog.user), dtype=np.float32)
    return [catalog.user, catalog.item, rating, catalog.timestamp]


def _replace(path: Path, write) -> None:
    """Write ``path`` whole through a temp file beside it, synced, then renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonl(rows) -> callable:
    def write(path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return write


def write_merge(folder: Path, merge: Merge) -> None:
    """Put ``merge`` on disk: items and users first (supersets the old arrays still
    fit), then the npz with its merged count, then ``meta.json``."""
    cat = merge.catalog
    rows = [json.loads(line) for line in
            (folder / "items.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    listed = {r["id"] for r in rows}
    online = {}  # items added through the API: their last upserted record
    for rec in read_records(folder / UPDATES):
        if rec.get("op") == "upsert" and rec["record"]["id"] not in listed:
            online[rec["record"]["id"]] = rec["record"]
    rows += [online[i] for i in sorted(online)]
    for r in rows:
        r.update(popularity=int(cat.items[r["id"]].popularity), head=r["id"] in cat.head)
    _replace(folder / "items.jsonl", _jsonl(rows))
    if merge.new_users:
        people = [json.loads(line) for line in
                  (folder / "users.jsonl").read_text(encoding="utf-8").splitlines()
                  if line.strip()] if (folder / "users.jsonl").is_file() else []
        people += [{"id": i, "external_id": u} for u, i in merge.new_users]
        _replace(folder / "users.jsonl", _jsonl(people))
    arrays = dict(user=cat.user, item=cat.item, rating=cat.rating, timestamp=cat.timestamp)

    def npz(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, **arrays, **{MERGED: np.int64(merge.log_lines)})
    _replace(folder / "interactions.npz", npz)
    _replace(folder / "meta.json", lambda p: p.write_text(json.dumps(cat.meta, indent=1)))
