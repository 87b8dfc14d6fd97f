"""The API's catalog endpoints on the generated shop: an item put is searchable at once
and survives a restart, a hidden one is never picked again, bad fields are a 400 that
changes nothing, and interactions are stored before the answer."""

from __future__ import annotations

import json

import chromadb
import pytest
from chromadb.config import Settings
from fastapi.testclient import TestClient

from agent.data.catalog import Catalog
from agent.data.live import INTERACTIONS, UPDATES, LiveCatalog
from agent.interfaces.api import create_app
from agent.interfaces.sessions import SessionStore
from agent.llm.fake import FakeBackend
from agent.rank.verbalizer import VerbalizerRanker
from agent.recommender import Recommender
from agent.retrieve.index import build_index, open_collection
from agent.retrieve.sources import HybridRetriever
from agent.understand.linking import TitleIndex
from tests.agent.data.test_import import imported_shop
from tests.agent.retrieve.test_index import HashEmbedder

KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW = {"name": "Muji Studio red cashmere scarf", "category": "scarf", "brand": "Muji",
       "colour": "red", "material": "cashmere", "price": 15.5,
       "description": "Red scarf in cashmere by Muji, from the Studio line."}


def live_shop(tmp_path, **sizes):
    """The generated shop imported and indexed (hash embeddings) under ``tmp_path``: its
    LiveCatalog (catalog, folder, collection, embedder) and Chroma client."""
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"),
                                       settings=Settings(anonymized_telemetry=False))
    catalog, emb = Catalog.load(imported_shop(tmp_path, **sizes)), HashEmbedder()
    build_index(client, catalog, emb, "shop", log=lambda m: None)
    folder = tmp_path / "data" / "shop"
    return LiveCatalog(catalog, folder, open_collection(client, emb, "shop"), emb), client


@pytest.fixture
def shop(tmp_path):
    live, _ = live_shop(tmp_path, n_products=120, users=150, interactions=1200)
    catalog = live.catalog
    rec = Recommender(catalog, TitleIndex(list(catalog.items.values())),
                      HybridRetriever(live.collection, live.embedder, catalog),
                      VerbalizerRanker(FakeBackend(), catalog, n_llm=0), None,
                      n_candidates=10, top_k=3, explain="template")
    app = create_app(rec, SessionStore(tmp_path / "s.sqlite3"), KEY, "fake", live)
    return TestClient(app, raise_server_exceptions=False), rec, live.folder


def _ask(api, text):
    sid = api.post("/v1/sessions", headers=AUTH).json()["id"]
    r = api.post(f"/v1/sessions/{sid}/messages", headers=AUTH, json={"content": text})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_put_item_is_recommended_at_once_and_after_a_restart(shop):
    api, rec, folder = shop
    assert api.put("/v1/items/SKU-NEW-1", json={"fields": NEW}).status_code == 401
    r = api.put("/v1/items/SKU-NEW-1", headers=AUTH, json={"fields": NEW})
    assert r.status_code == 200 and r.json()["created"] is True
    new_id = r.json()["id"]
    picks = _ask(api, "a red cashmere scarf by Muji under 20")
    assert picks and picks[0]["external_id"] == "SKU-NEW-1" and picks[0]["id"] == new_id
    again = Catalog.load(folder)  # a restart replays the log
    assert again.get(new_id).title == NEW["name"] and again.get(new_id).attrs["price"] == 15.5
    # replacing it keeps its id
    r = api.put("/v1/items/SKU-NEW-1", headers=AUTH, json={"fields": {**NEW, "price": 12}})
    assert r.json() == {"id": new_id, "external_id": "SKU-NEW-1", "title": NEW["name"],
                        "created": False}
    assert rec.catalog.get(new_id).attrs["price"] == 12


def test_a_hidden_item_is_never_recommended_again(shop):
    api, rec, folder = shop
    first = _ask(api, "black trainers")[0]
    assert api.delete(f"/v1/items/{first['external_id']}", headers=AUTH).json() == {"ok": True}
    for _ in range(3):
        assert first["id"] not in [p["id"] for p in _ask(api, "black trainers")]
    assert first["id"] in Catalog.load(folder).hidden
    assert api.delete("/v1/items/SKU-99999", headers=AUTH).status_code == 404


def test_bad_fields_are_a_400_that_changes_nothing(shop):
    api, rec, folder = shop
    before = len(rec.catalog.items)
    r = api.put("/v1/items/SKU-BAD", headers=AUTH, json={"fields": {**NEW, "price": "cheap"}})
    assert r.status_code == 400 and "'price': 'cheap' is not a number" in r.text
    r = api.put("/v1/items/SKU-BAD", headers=AUTH, json={"fields": {**NEW, "name": ""}})
    assert r.status_code == 400 and "no title" in r.text
    r = api.put("/v1/items/SKU-BAD", headers=AUTH, json={"fields": {**NEW, "colur": "red"}})
    assert r.status_code == 400 and "unknown field(s) colur" in r.text
    assert api.put("/v1/items/..%2Fetc", headers=AUTH, json={"fields": NEW}).status_code in (
        400, 404)
    assert len(rec.catalog.items) == before and not (folder / UPDATES).exists()


def test_interactions_are_stored_before_the_answer(shop):
    api, rec, folder = shop
    sku = next(iter(rec.catalog.items.values())).external_id
    body = {"user": "c9999", "item": sku, "timestamp": 1750000000}
    assert api.post("/v1/interactions", headers=AUTH, json=body).json() == {"ok": True}
    lines = (folder / INTERACTIONS).read_text().splitlines()
    assert json.loads(lines[-1]) == {**body, "rating": None}
    missing = api.post("/v1/interactions", headers=AUTH, json={**body, "item": "SKU-0"})
    assert missing.status_code == 404
    assert len((folder / INTERACTIONS).read_text().splitlines()) == 1


def test_a_brand_first_seen_online_can_be_asked_for_at_once(shop):
    """A value no item had (a new brand) becomes something a request names at the next
    turn, not after a restart; excluding it works too."""
    api, rec, _ = shop
    fields = {**NEW, "brand": "Hestra", "name": "Hestra Studio red cashmere scarf"}
    r = api.put("/v1/items/SKU-HESTRA", headers=AUTH, json={"fields": fields})
    assert r.status_code == 200
    sid = api.post("/v1/sessions", headers=AUTH).json()["id"]
    r = api.post(f"/v1/sessions/{sid}/messages", headers=AUTH,
                 json={"content": "a scarf by Hestra"}).json()
    assert ["brand", "Hestra"] in r["state"]["facets"]
    assert r["items"][0]["external_id"] == "SKU-HESTRA"
    r = api.post(f"/v1/sessions/{sid}/messages", headers=AUTH,
                 json={"content": "actually no Hestra"}).json()
    assert ["brand", "Hestra"] in r["state"]["excluded_facets"]
    assert all(it["external_id"] != "SKU-HESTRA" for it in r["items"])
