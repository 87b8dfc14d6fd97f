"""A film catalog under its own column names: the schema's roles bind the film rules
(genre words, decades, fuzzy names, the film explanations) to ``genre``,
``release_year``, ``directors`` and ``actors``, as RecBole's ML-1M files name them, and
a turn reads and filters by those fields, in Python and in the Chroma index alike."""

from __future__ import annotations

import pytest
import yaml

from agent.data.catalog import Catalog
from agent.data.imports import import_dataset
from agent.llm.fake import FakeBackend
from agent.rank.verbalizer import VerbalizerRanker
from agent.recommender import Recommender
from agent.retrieve.index import build_index, open_collection
from agent.retrieve.sources import HybridRetriever
from agent.understand.linking import TitleIndex
from agent.understand.people import PeopleIndex
from agent.understand.state import chroma_where, satisfies
from agent.types import DialogueState
from tests.agent.data.test_import import _write_csv
from tests.agent.retrieve.test_index import HashEmbedder
from tests.conftest import tiny_items

SCHEMA = {
    "name": "films", "item_noun": "film",
    "items": {"id": "movie_id", "title": "name", "label": "{name} ({release_year})"},
    "interactions": {"user": "user_id", "item": "movie_id", "timestamp": "ts"},
    "facets": [
        {"field": "release_year", "kind": "range", "role": "year"},
        {"field": "genre", "kind": "category", "multi": True, "role": "genre"},
        {"field": "directors", "kind": "entity", "multi": True, "filter": False,
         "role": "director"},
        {"field": "actors", "kind": "entity", "multi": True, "filter": False, "role": "cast"},
    ],
}


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    root = tmp_path_factory.mktemp("renamed-films")
    items = _write_csv(root / "movies.csv", [
        {"movie_id": f"m{it.id}", "name": it.title, "release_year": it.value("year"),
         "genre": "|".join(it.values("genres")), "directors": "|".join(it.values("director")),
         "actors": "|".join(it.values("cast"))} for it in tiny_items()])
    histories = {1: [1, 2, 3, 8], 2: [1, 3, 11, 7], 3: [5, 10, 4], 4: [2, 8, 3, 6, 12],
                 5: [6, 4, 9, 10], 6: [11, 1, 7, 12]}
    inter = _write_csv(root / "views.csv", [
        {"user_id": f"u{u}", "movie_id": f"m{i}", "ts": 1000 * u + t}
        for u, seq in histories.items() for t, i in enumerate(seq)])
    schema = root / "schema.yaml"
    schema.write_text(yaml.safe_dump(SCHEMA), encoding="utf-8")
    result = import_dataset("films", root / "data", items, inter, schema=schema,
                            log=lambda *_: None)
    return Catalog.load(result.folder), root


@pytest.fixture(scope="module")
def recommender(films):
    import chromadb
    from chromadb.config import Settings

    catalog, root = films
    client = chromadb.PersistentClient(path=str(root / "chroma"),
                                       settings=Settings(anonymized_telemetry=False))
    emb = HashEmbedder()
    build_index(client, catalog, emb, "films", log=lambda m: None)
    items = list(catalog.items.values())
    retriever = HybridRetriever(open_collection(client, emb, "films"), emb, catalog)
    ranker = VerbalizerRanker(FakeBackend(), catalog, n_llm=4, weight=0.0)
    return Recommender(catalog, TitleIndex(items), retriever, ranker, None, n_candidates=10,
                       top_k=3, explain="template",
                       people=PeopleIndex(items, roles=catalog.schema.roles))


def by_title(catalog, title):
    return next(it for it in catalog.items.values() if it.title == title)


def test_the_roles_name_the_catalogs_own_fields(films):
    catalog, _ = films
    roles = catalog.schema.roles
    heat = by_title(catalog, "Heat")
    assert (roles.year_of(heat), roles.genres_of(heat)) == (1995, ("Action", "Crime", "Thriller"))
    assert roles.credits(heat) == ("Michael Mann", "Al Pacino", "Robert De Niro")
    assert heat.value("year") is None  # nothing reads MovieLens' names here
    where = chroma_where(DialogueState(genres=("Crime",), year_min=1990), schema=catalog.schema)
    assert where == {"$and": [{"release_year": {"$gte": 1990}}, {"genre_crime": True}]}


def test_a_turn_reads_genres_decades_and_people_from_them(recommender):
    catalog = recommender.catalog
    reply = recommender.turn("a thriller from the 90s")
    assert reply.state.genres == ("Thriller",) and reply.state.year_min == 1990
    assert reply.recommendations
    for r in reply.recommendations:
        assert "Thriller" in r.item.values("genre") and 1990 <= r.item.value("release_year") < 2000
    reply = recommender.turn("something with sigourney weaver, nothing by james cameron")
    assert reply.state.people == ("Sigourney Weaver",)
    assert reply.state.excluded_people == ("James Cameron",)
    titles = {r.item.title for r in reply.recommendations}
    assert titles and titles <= {"Alien", "Alien 3"}
    asked = reply.state.with_changes(shown=())  # the picks are shown now
    for r in reply.recommendations:  # the rule in Python and the index filter agree
        assert satisfies(r.item, asked, catalog.schema.roles)
    assert not satisfies(by_title(catalog, "Aliens"), asked, catalog.schema.roles)


def test_the_explanations_use_the_film_frames(recommender):
    reply = recommender.turn("I liked Alien, more like it")
    text = " ".join(r.explanation for r in reply.recommendations)
    assert reply.recommendations and "Alien" in text
    assert any(w in text for w in ("directed", "Sigourney Weaver", "Sci-Fi", "Horror")), text


def test_without_roles_the_same_columns_are_plain_facets(films, tmp_path):
    catalog, root = films
    plain = {**SCHEMA, "facets": [{k: v for k, v in f.items() if k != "role"}
                                  for f in SCHEMA["facets"]]}
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(plain), encoding="utf-8")
    result = import_dataset("plain", tmp_path / "data", root / "movies.csv",
                            root / "views.csv", schema=path, log=lambda *_: None)
    roles = Catalog.load(result.folder).schema.roles
    assert not roles.films and roles.credits(by_title(catalog, "Heat")) == ()
    # a client's state naming film slots filters nothing the catalog cannot read
    assert satisfies(by_title(catalog, "Heat"), DialogueState(genres=("Drama",)), roles)


def test_the_index_filter_is_the_same_rule_on_renamed_fields(recommender):
    from agent.understand.state import constraint

    catalog = recommender.catalog
    col = recommender.retriever.collection
    states = (DialogueState(genres=("Sci-Fi", "Action")),
              DialogueState(genres=("Crime", "Comedy"), genre_or=True, year_max=1994),
              DialogueState(excluded_genres=("Horror",), year_min=1980, year_max=1989),
              DialogueState(moods=("cozy",), shown=(5,)),
              DialogueState(liked=(3,), like_genres=("Thriller",), year_min=1990))
    for state in states:
        fits = constraint(state, catalog.schema.roles)
        want = {str(i) for i, it in catalog.items.items() if fits(it)}
        got = set(col.get(where=chroma_where(state, schema=catalog.schema))["ids"])
        assert want and got == want, state
