"""Build and open the Chroma collection of catalog items."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agent.errors import AssetError
from agent.types import Item

BATCH = 512  # well under Chroma's max batch (5,461)


def item_document(item: Item, schema) -> str:
    """The text embedded for an item, as ``schema`` (a ``CatalogSchema``) writes it: for
    MovieLens its title, year, genres, director and some cast."""
    return schema.document_of(item.value)


def item_metadata(item: Item, is_head: bool, schema, values: dict) -> dict:
    """Scalar metadata for ``where`` filters: the id, popularity and head/tail bucket,
    and the schema's filter facets (for MovieLens the year and a flag per genre)."""
    meta = {"item_id": item.id, "popularity": item.popularity,
            "bucket": "head" if is_head else "tail"}
    meta.update(schema.metadata_of(item.value, values))
    return meta


def collection_name(dataset: str) -> str:
    return f"tailor-{dataset}-items"


def make_client(settings):
    """A Chroma client: HTTP when ``TAILOR_CHROMA_URL`` is set, else on-disk."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(settings.chroma_url)
        try:
            return chromadb.HttpClient(host=url.hostname, port=url.port or 8000,
                                       ssl=url.scheme == "https", settings=chroma_settings)
        except ValueError as e:  # what chromadb raises when nothing answers
            raise AssetError(f"cannot reach the Chroma server at {settings.chroma_url} ({e}); "
                             "start it, or unset TAILOR_CHROMA_URL to use the on-disk "
                             "index") from None
    path = settings.index_dir()
    path.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as e:  # chromadb.errors.InternalError for a damaged chroma.sqlite3, ...
        raise AssetError(f"the Chroma index in {path} is damaged and cannot be opened "
                         f"({type(e).__name__}: {e}); delete that folder and run "
                         f"`tailor index` to rebuild it") from None


def readable_count(col) -> int | None:
    """How many items the collection holds, or None when its stored vectors cannot be
    read: a deleted or damaged segment folder fails here rather than in a user's turn
    (``count`` alone can still succeed without the vectors)."""
    try:
        n = col.count()
        col.get(limit=1, include=["embeddings"])
    except Exception:  # chromadb raises InternalError and others for a damaged store
        return None
    return n


def fingerprint(docs: list[str], metas: list[dict], embedder_name: str) -> str:
    h = hashlib.sha256(embedder_name.encode())
    for d, m in zip(docs, metas):
        h.update(d.encode())
        h.update(json.dumps(m, sort_keys=True).encode())
    return h.hexdigest()[:16]


def build_index(client, catalog, embedder, dataset: str, log=print) -> dict:
    """Create or refresh the collection. Idempotent: an up-to-date index is left as is."""
    from tqdm import tqdm

    items = sorted((it for it in catalog.items.values() if it.id not in catalog.hidden),
                   key=lambda i: i.id)
    docs = [item_document(i, catalog.schema) for i in items]
    metas = [item_metadata(i, i.id in catalog.head, catalog.schema, catalog.facet_values)
             for i in items]
    ids = [str(i.id) for i in items]
    fp = fingerprint(docs, metas, Path(embedder.path).name)
    name = collection_name(dataset)
    existing = {c.name for c in client.list_collections()}
    if name in existing:
        col = client.get_collection(name, embedding_function=embedder)
        count = readable_count(col)
        if count is None:
            log(f"index {name} is damaged; rebuilding it")
        elif (col.metadata or {}).get("fingerprint") == fp and count == len(ids):
            log(f"index {name} is up to date ({len(ids)} items)")
            return {"collection": name, "items": len(ids), "fingerprint": fp, "rebuilt": False}
        client.delete_collection(name)
    col = client.create_collection(name, embedding_function=embedder,
                                   metadata={"hnsw:space": "cosine", "fingerprint": fp})
    for start in tqdm(range(0, len(ids), BATCH), desc=f"indexing {dataset}", unit="batch"):
        sl = slice(start, start + BATCH)
        col.add(ids=ids[sl], documents=docs[sl], metadatas=metas[sl],
                embeddings=embedder.encode(docs[sl]))
    log(f"index {name}: {col.count()} items")
    return {"collection": name, "items": len(ids), "fingerprint": fp, "rebuilt": True}


def refresh_metadata(collection, catalog, embedder_name: str) -> int:
    """Bring the popularity and head/tail metadata of an up-to-date collection in line
    with ``catalog`` in place (after ``tailor retrain`` recounted them), so a server
    reading the collection keeps its handle; returns how many items changed. Documents
    and embeddings are not touched: use ``build_index`` when those changed."""
    items = sorted((it for it in catalog.items.values() if it.id not in catalog.hidden),
                   key=lambda i: i.id)
    metas = [item_metadata(i, i.id in catalog.head, catalog.schema, catalog.facet_values)
             for i in items]
    ids = [str(i.id) for i in items]
    got = collection.get(ids=ids, include=["metadatas"])
    stored = dict(zip(got["ids"], got["metadatas"]))
    changed = [k for k, (i, m) in enumerate(zip(ids, metas))
               if {f: (stored.get(i) or {}).get(f) for f in ("popularity", "bucket")}
               != {"popularity": m["popularity"], "bucket": m["bucket"]}]
    for start in range(0, len(changed), BATCH):
        part = changed[start:start + BATCH]
        collection.update(ids=[ids[k] for k in part],
                          metadatas=[{"popularity": metas[k]["popularity"],
                                      "bucket": metas[k]["bucket"]} for k in part])
    docs = [item_document(i, catalog.schema) for i in items]
    import warnings

    with warnings.catch_warnings():  # chromadb re-reads our embedder's config: harmless
        warnings.filterwarnings("ignore", message="Could not reconstruct embedding function")
        collection.modify(metadata={"fingerprint": fingerprint(docs, metas, embedder_name)})
    return len(changed)


def open_collection(client, embedder, dataset: str):
    """The item collection, or a clear error saying how to build it."""
    try:
        col = client.get_collection(collection_name(dataset), embedding_function=embedder)
    except Exception as e:  # chromadb raises several types for a missing/corrupt store
        raise AssetError(f"no usable Chroma index for {dataset} ({type(e).__name__}: {e}); "
                         f"run `tailor index --dataset {dataset}` first") from None
    count = readable_count(col)
    if count is None:
        raise AssetError(f"the Chroma index for {dataset} is damaged (its stored vectors cannot "
                         f"be read); run `tailor index --dataset {dataset}` to rebuild it")
    if count == 0:
        raise AssetError(f"the Chroma index for {dataset} is empty; run `tailor index`")
    return col
