import hashlib

import numpy as np
import pytest

from agent.retrieve.index import build_index, item_document, open_collection
from agent.retrieve.sources import HybridRetriever
from agent.types import DialogueState


class HashEmbedder:
    """Bag-of-words hashed into 64 dims: deterministic, no model (unit tests only)."""

    path = "hash-embedder"

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for r, text in enumerate(texts):
            for w in text.lower().replace(",", " ").replace(".", " ").split():
                out[r, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def __call__(self, input):
        return list(self.encode(list(input)))

    @staticmethod
    def name():
        return "hash-embedder"

    def get_config(self):
        return {}

    @staticmethod
    def build_from_config(config):
        return HashEmbedder()

    def is_legacy(self):
        return False

    def default_space(self):
        return "cosine"

    def supported_spaces(self):
        return ["cosine"]

    def embed_query(self, input):
        return self(input)


@pytest.fixture
def client(tmp_path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(tmp_path / "chroma"),
                                     settings=Settings(anonymized_telemetry=False))


def test_document_has_the_facts(catalog):
    doc = item_document(catalog.get(1), catalog.schema)
    assert doc.startswith("Alien (1979). Genres: Action, Horror, Sci-Fi, Thriller.")
    assert "Directed by Ridley Scott." in doc and "Sigourney Weaver" in doc


def test_build_is_idempotent_and_filters_work(client, catalog):
    emb = HashEmbedder()
    first = build_index(client, catalog, emb, "tiny", log=lambda m: None)
    second = build_index(client, catalog, emb, "tiny", log=lambda m: None)
    assert first["rebuilt"] and not second["rebuilt"] and second["items"] == 12
    col = open_collection(client, emb, "tiny")
    res = col.get(where={"$and": [{"g_sci_fi": True}, {"g_horror": False},
                                  {"year": {"$gte": 1990}}]}, include=["metadatas"])
    assert sorted(m["item_id"] for m in res["metadatas"]) == [3, 8]
    assert col.get(ids=["5"], include=["metadatas"])["metadatas"][0]["bucket"] == "head"


def test_hybrid_retrieval_respects_state(client, catalog):
    emb = HashEmbedder()
    build_index(client, catalog, emb, "tiny", log=lambda m: None)
    retriever = HybridRetriever(open_collection(client, emb, "tiny"), emb, catalog)
    state = DialogueState(liked=(1,), excluded_genres=("Horror",), year_min=1990, year_max=1999)
    cands = retriever.retrieve(state, 10)
    ids = [c.item_id for c in cands]
    assert ids and 1 not in ids
    assert all(catalog.get(i).value("year") >= 1990 and "Horror" not in catalog.get(i).values("genres") for i in ids)
    # Terminator 2 is co-watched with Alien by two users and similar in text: both sources.
    t2 = next(c for c in cands if c.item_id == 3)
    assert set(t2.sources) >= {"semantic", "cowatch"}


def test_a_genre_alone_is_no_search_and_orders_by_how_much_fits(client, catalog):
    emb = HashEmbedder()
    build_index(client, catalog, emb, "tiny", log=lambda m: None)
    retriever = HybridRetriever(open_collection(client, emb, "tiny"), emb, catalog)
    sci = DialogueState(genres=("Sci-Fi",))
    # The genre is a filter; its name as a search would favour the sparsest documents.
    # The films most of whose genres are asked for come first, then the most watched:
    # half sci-fi (Blade Runner, Twelve Monkeys, Species), a third (Terminator 2, 2001,
    # Alien 3), a quarter (Alien, Aliens).
    assert retriever.query_vector(sci) is None
    assert [i for i, _ in retriever.semantic(sci, 12)] == [2, 8, 12, 3, 9, 7, 1, 11]
    assert retriever.query_vector(sci.with_changes(liked=(1,))) is not None
    assert retriever.query_vector(sci.with_changes(query="space")) is not None
    # "something sad" (drama, romance or war, no horror): half of Twelve Monkeys and of
    # Annie Hall is what it asks, a third of 2001, a quarter of Aliens (the most popular).
    sad = DialogueState(moods=("sad",))
    assert [i for i, _ in retriever.semantic(sad, 12)] == [8, 10, 9, 11]
    assert [i for i, _ in retriever.popular(sad, 12)] == [11, 8, 9, 10]


def test_missing_index_is_a_clear_error(client):
    from agent.errors import AssetError

    with pytest.raises(AssetError, match="tailor index"):
        open_collection(client, HashEmbedder(), "nothing-here")


def test_content_source_scores_shared_facts(client, catalog):
    emb = HashEmbedder()
    build_index(client, catalog, emb, "tiny", log=lambda m: None)
    retriever = HybridRetriever(open_collection(client, emb, "tiny"), emb, catalog)
    ranked = retriever.content(DialogueState(liked=(1,)), 3)
    # Alien 3: 3 of 4 genres shared (0.75) + Sigourney Weaver (0.25) = 1.0;
    # Aliens: 3 of 5 genres (0.6) + cast (0.25) = 0.85; Terminator 2: 3 of 4 = 0.75.
    assert [i for i, _ in ranked] == [7, 11, 3]
    assert ranked[0][1] == pytest.approx(1.0)


def test_a_dislike_pushes_down_items_like_it(client, catalog):
    emb = HashEmbedder()
    build_index(client, catalog, emb, "tiny", log=lambda m: None)
    retriever = HybridRetriever(open_collection(client, emb, "tiny"), emb, catalog)
    # n=12: every sci-fi film comes back, so both orders hold the same films. A search
    # word gives the semantic source a vector (a genre alone is no search).
    asked = DialogueState(genres=("Sci-Fi",), query="sci-fi")
    plain = [c.item_id for c in retriever.retrieve(asked, 12)]
    after = retriever.retrieve(asked.with_changes(disliked=(1,)), 12)
    ids = [c.item_id for c in after]
    # Disliking Alien: the rest keep their place or fall, and nothing the user did not
    # ask for is added.
    assert 1 in plain and 1 not in ids
    others = [i for i in plain if i != 1]
    assert sorted(ids) == sorted(others)
    # Alien 3 and Aliens (same genres, shared cast) never rise; Alien 3, second of the
    # rest before, falls below Twelve Monkeys and 2001 (dramas, nothing like Alien).
    for similar in (7, 11):
        assert ids.index(similar) >= others.index(similar), (similar, others, ids)
    assert others.index(7) < others.index(8) and others.index(7) < others.index(9), others
    assert ids.index(7) > ids.index(8) and ids.index(7) > ids.index(9), ids
    assert all("Sci-Fi" in catalog.get(i).values("genres") for i in ids)
    assert all(set(c.sources) - {"avoid"} for c in after)
    assert all("avoid" in c.sources for c in after if c.item_id in (7, 11))


def test_the_index_of_an_imported_shop_follows_its_schema(client, tmp_path):
    """A second domain: the document and the where-filters come from the shop's schema."""
    from agent.data.catalog import Catalog
    from agent.data.imports import import_dataset
    from tests.agent.data.test_import import _make_shop

    files = _make_shop()(tmp_path / "files", n_products=60, users=40, interactions=300)
    result = import_dataset("shop", tmp_path / "data", files["items"], files["interactions"],
                            log=lambda *_: None)
    shop = Catalog.load(result.folder)
    first = shop.get(1)
    assert first.external_id == "SKU-00001" and first.value("price") == first.attrs["price"]
    doc = item_document(first, shop.schema)
    assert doc.startswith(first.title + ". " + first.attrs["description"])
    assert f"Price: {first.attrs['price']:g}." in doc and f"Brand: {first.attrs['brand']}." in doc
    emb = HashEmbedder()
    assert build_index(client, shop, emb, "shop", log=lambda m: None)["items"] == 60
    col = open_collection(client, emb, "shop")
    wool = col.get(where={"$and": [{"material_wool": True}, {"price": {"$lt": 50}}]})
    expected = {str(i) for i, it in shop.items.items()
                if it.attrs["material"] == "wool" and it.attrs["price"] < 50}
    assert expected and set(wool["ids"]) == expected


@pytest.mark.assets
def test_the_movielens_schema_writes_the_documents_and_filters_the_index_had(real_settings):
    """Moving the document and the metadata behind the schema changed nothing for
    MovieLens: the same text is embedded and the same flags filter (so the retrieval and
    every eval number stay as they were). The running time is a filter since "nothing too
    long" is understood, and the language ("a French film", "a foreign film") a flag per
    language: the new keys (the index was rebuilt once for them)."""
    from agent.data.catalog import Catalog
    from agent.domain.movielens.loaders import ML_GENRES
    from agent.domain.schema import flag_key
    from agent.retrieve.index import item_metadata

    catalog = Catalog.load(real_settings.data_dir())
    for it in catalog.items.values():
        want = [it.label + "."]
        want += [f"Genres: {', '.join(it.values('genres'))}."] if it.values('genres') else []
        want += [f"Directed by {', '.join(it.values('director'))}."] if it.values('director') else []
        want += [f"Cast: {', '.join(it.values('cast')[:8])}."] if it.values('cast') else []
        assert item_document(it, catalog.schema) == " ".join(want), it.id
        meta = {"item_id": it.id, "popularity": it.popularity,
                "bucket": "head" if it.id in catalog.head else "tail",
                **({"year": it.value("year")} if it.value("year") is not None else {}),
                **({"runtime": it.value("runtime")} if it.value("runtime") is not None else {}),
                **{flag_key(catalog.schema.facet("language"), v): it.value("language") == v
                   for v in catalog.facet_values["language"]},
                **{"g_" + g.lower().replace("'", "_").replace("-", "_").strip("_"): g in it.values("genres")
                   for g in ML_GENRES}}
        assert item_metadata(it, it.id in catalog.head, catalog.schema,
                             catalog.facet_values) == meta, it.id
