import io
import json
import zipfile

import numpy as np
import pytest

from agent.domain.movielens.loaders import (
    load_grouplens_100k, load_grouplens_1m, load_recbole, open_grouplens_zip, prepare_dataset)
from agent.data.stats import cowatch_matrix, head_tail_split, transition_matrix
from agent.domain.movielens.facts import enrich_items, load_film_facts, title_key
from agent.errors import AssetError
from tests.conftest import RECBOLE_100K, RECBOLE_1M


def test_recbole_100k_keeps_integer_ids_and_fixes_titles():
    raw = load_recbole(RECBOLE_100K, "fixture", string_ids=False)
    items = {it["id"]: it for it in raw.items}
    assert items[4]["title"] == "The Usual Suspects"
    assert items[5]["genres"] == ("Animation", "Children's", "Comedy")
    assert items[7]["year"] is None and items[7]["genres"] == ()  # "unkonwn" year, "unknown" genre
    assert raw.user.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert raw.item.tolist()[:3] == [1, 2, 3]
    assert raw.rating.dtype == np.float32 and raw.timestamp.tolist()[0] == 100


def test_recbole_1m_string_ids_become_stable_integers():
    raw = load_recbole(RECBOLE_1M, "fixture", string_ids=True)
    assert [(it["id"], it["title"], it["year"]) for it in raw.items] == [
        (1, "Toy Story", 1995), (2, "The Usual Suspects", 1995)]
    assert raw.user.tolist() == [1, 2]  # "1m_1" -> 1
    assert raw.item.tolist() == [2, 1]


def test_recbole_unknown_item_in_interactions_is_a_clear_error():
    files = dict(RECBOLE_1M, inter=RECBOLE_1M["inter"] + "1m_1\tNope (1999)\t1\t1\n")
    with pytest.raises(AssetError, match="unknown item"):
        load_recbole(files, "fixture", string_ids=True)


def _zip(files: dict[str, str], encoding="latin-1") -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode(encoding))
    buf.seek(0)
    return zipfile.ZipFile(buf)


def test_grouplens_100k_zip():
    flags = ["0"] * 19
    flags[15] = flags[1] = "1"  # Action, Sci-Fi
    zf = _zip({
        "ml-100k/u.item": f"1|Alien (1979)|01-Jan-1979||http://x|{'|'.join(flags)}\n"
                          f"2|City of Lost Children, The (1995)|01-Jan-1995||http://x|{'|'.join(['0'] * 19)}\n",
        "ml-100k/u.user": "1|24|M|technician|85711\n",
        "ml-100k/u.data": "1\t1\t5\t881250949\n1\t2\t3\t881250950\n",
    })
    raw = load_grouplens_100k(zf, "zip")
    assert raw.items[0] == {"id": 1, "title": "Alien", "year": 1979, "genres": ("Action", "Sci-Fi")}
    assert raw.items[1]["title"] == "The City of Lost Children"
    assert raw.item.tolist() == [1, 2] and raw.rating.tolist() == [5.0, 3.0]


def test_grouplens_1m_zip():
    zf = _zip({
        "ml-1m/movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                            "50::Usual Suspects, The (1995)::Crime|Thriller\n",
        "ml-1m/users.dat": "1::F::1::10::48067\n",
        "ml-1m/ratings.dat": "1::50::5::978300760\n1::1::4::978300761\n",
    })
    raw = load_grouplens_1m(zf, "zip")
    assert [it["id"] for it in raw.items] == [1, 50]
    assert raw.items[1]["title"] == "The Usual Suspects"
    assert raw.item.tolist() == [50, 1] and raw.timestamp.tolist() == [978300760, 978300761]


def test_wrong_zip_is_a_clear_error(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(AssetError, match="no u.data"):
        load_grouplens_100k(open_grouplens_zip(str(path), tmp_path), "x")
    with pytest.raises(AssetError, match="no such file"):
        open_grouplens_zip(str(tmp_path / "missing.zip"), tmp_path)


def test_enrichment_joins_on_title_and_year(film_db):
    items = [dict(it) for it in load_recbole(RECBOLE_100K, "fixture", False).items]
    rate = enrich_items(items, load_film_facts(film_db))
    by_id = {it["id"]: it for it in items}
    assert by_id[4]["director"] == ["Bryan Singer"]  # "Usual Suspects, The" matched
    assert by_id[6]["director"] == ["Michael Mann"]  # 1995 vs 1996: one year off still joins
    assert "director" not in by_id[5]  # Toy Story is not in the fixture table
    assert rate == pytest.approx(5 / 7)


def test_title_key_normalizes_articles_and_aliases():
    assert title_key("Usual Suspects, The") == title_key("The Usual Suspects") == "usual suspects"
    assert title_key("Seven (Se7en)") == "seven"


def test_head_tail_split_records_threshold():
    head, threshold = head_tail_split({1: 5, 2: 3, 3: 1, 4: 1})
    assert head == {1, 2} and threshold == 3  # 8 of 10 interactions


def test_cowatch_is_cosine_of_binary_columns():
    user = np.array([1, 1, 2, 2, 3])
    item = np.array([1, 2, 1, 2, 1])
    sim = cowatch_matrix(user, item, 3).toarray()
    # item 1 watched by 3 users, item 2 by 2, both by 2: 2 / sqrt(3 * 2)
    assert sim[1, 2] == pytest.approx(2 / np.sqrt(6))
    assert sim[1, 1] == 0.0


def test_what_came_next_keeps_the_order_and_the_distance():
    m = transition_matrix([[1, 2, 3, 4], [2, 1]], 5, window=2).toarray()
    assert m[1, 2] > m[1, 3] > 0 and m[1, 4] == 0  # nearer first; beyond the window: none
    assert m[3, 2] == 0 and m[4, 1] == 0 and m[2, 1] > 0  # only what came after
    assert m[1].sum() == pytest.approx(1.0) and m[4].sum() == 0  # last items lead nowhere
    assert transition_matrix([[1]], 3).nnz == 0


def test_prepare_dataset_from_zip_writes_normalized_files(tmp_path, film_db):
    path = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/u.item", "1|Alien (1979)|x||x|" + "|".join(["0"] * 19) + "\n"
                    "2|Heat (1995)|x||x|" + "|".join(["0"] * 19) + "\n")
        zf.writestr("ml-100k/u.user", "".join(f"{u}|24|M|x|1\n" for u in range(1, 5)))
        zf.writestr("ml-100k/u.data", "".join(f"{u}\t1\t5\t{u}\n" for u in range(1, 5))
                    + "4\t2\t3\t12\n")
    dest = tmp_path / "out"
    meta = prepare_dataset("ml-100k", str(path), tmp_path, dest, film_db=film_db, log=lambda m: None)
    assert meta["interactions"] == 5 and meta["enrichment"]["item_match_rate"] == 1.0
    assert meta["head_tail"]["threshold_min_interactions_in_head"] == 4  # 4 of 5 = 80%
    items = [json.loads(line) for line in open(dest / "items.jsonl")]
    assert [(i["id"], i["popularity"], i["head"]) for i in items] == [(1, 4, True), (2, 1, False)]
    with np.load(dest / "interactions.npz") as z:
        assert z["item"].tolist() == [1, 1, 1, 1, 2]


def test_a_series_title_joins_by_its_series_name_or_subtitle_unless_ambiguous(tmp_path):
    import sqlite3

    from tests.conftest import write_film_db

    db = write_film_db(tmp_path / "movies.db")
    con = sqlite3.connect(db)
    rows = [(90, "Star Wars: Episode V \u2013 The Empire Strikes Back", 1980, "Irvin Kershner",
             "Harrison Ford", 124.0, "United States", "English", 1),
            (91, "Twin Saga: Part One", 1990, "A", "X Y", 90.0, "US", "English", 1),
            (92, "Twin Saga: Part Two", 1990, "B", "Z W", 90.0, "US", "English", 1)]
    con.executemany("INSERT INTO omdb VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    items = [{"title": "The Empire Strikes Back", "year": 1980},
             {"title": "Twin Saga", "year": 1990}, {"title": "Heat", "year": 1995}]
    enrich_items(items, load_film_facts(db))
    assert items[0]["cast"] == ["Harrison Ford"]
    assert "cast" not in items[1]  # two films share the alias in one year: neither is taken
    assert items[2]["director"] == ["Michael Mann"]  # exact keys still win
