"""Film facts (director, cast, runtime, country) joined onto MovieLens items.

The facts come from the CC0 film table in ``bokeh-sampledata`` (``movies.db``,
table ``omdb``), joined on a normalized title and the release year.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from agent.domain.text import title_key  # noqa: F401 (the film table joins on it)


# "Star Wars: Episode V – The Empire Strikes Back": a series name, then the film's own
_SUBTITLE = re.compile(r"\s*[:\u2013\u2014]\s*|\s+-\s+")
MAX_CAST = 40  # the table lists cast alphabetically, not by billing: keep it whole


def split_names(value: str | None, limit: int | None = None) -> list[str]:
    """A comma-separated name field as a list ("N/A" is no name)."""
    if not value:
        return []
    names = [n.strip() for n in value.split(",") if n.strip() and n.strip() != "N/A"]
    return names[:limit] if limit else names


def title_aliases(title: str) -> set[str]:
    """Other keys a film with a series title is known by: the series name and the film's
    own subtitle, each of two words or more (one word, "Alien", would match too much).

    >>> sorted(title_aliases("Star Wars: Episode V \u2013 The Empire Strikes Back"))
    ['empire strikes back', 'star wars']
    >>> title_aliases("Alien: Resurrection"), title_aliases("Heat")
    (set(), set())
    """
    parts = [p for p in _SUBTITLE.split(title) if p.strip()]
    if len(parts) < 2:
        return set()
    keys = {title_key(parts[0]), title_key(parts[-1])}
    return {k for k in keys if len(k.split()) >= 2} - {title_key(title)}


def film_table_rows(db_path: Path, sql: str) -> list[tuple]:
    """The rows of one query on the CC0 film table, opened read-only."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def load_film_facts(db_path: Path) -> dict[tuple[str, int], dict]:
    """Read the CC0 film table into ``{(title_key, year): facts}``.

    Where two films share a key, the one with more IMDb votes wins. A film with a series
    title is also keyed by its aliases (``title_aliases``: "Star Wars (1977)" in
    MovieLens is "Star Wars: Episode IV – A New Hope" there) where no film has that key
    and no other film of that year has the same alias.
    """
    rows = film_table_rows(db_path, 'SELECT Title, Year, Director, "Cast", Runtime, Country, '
                                    'Language, COALESCE(imdbVotes, 0) FROM omdb')
    best: dict[tuple[str, int], tuple[int, dict]] = {}
    aliases: dict[tuple[str, int], list[dict]] = {}
    for title, year, director, cast, runtime, country, language, votes in rows:
        if not title or not year:
            continue
        key = (title_key(title), int(year))
        facts = {"director": split_names(director), "cast": split_names(cast, MAX_CAST),
                 "runtime": int(runtime) if runtime else None,
                 "country": (country or "").split(",")[0].strip() or None,
                 "language": (language or "").split(",")[0].strip() or None}
        if key not in best or votes > best[key][0]:
            best[key] = (votes, facts)
        for alias in title_aliases(title):
            aliases.setdefault((alias, int(year)), []).append(facts)
    out = {k: v for k, (_, v) in best.items()}
    for key, found in aliases.items():
        if key not in out and len(found) == 1:
            out[key] = found[0]
    return out


def enrich_items(items: list[dict], facts: dict[tuple[str, int], dict]) -> float:
    """Add facts to ``items`` in place; returns the share of items matched.

    Exact (title, year) first; then the same title one year off, since release
    years differ by a year between sources for festival and late releases.
    """
    matched = 0
    for it in items:
        if it["year"] is None:
            continue
        key = title_key(it["title"])
        hit = facts.get((key, it["year"]))
        if hit is None:
            near = [facts[(key, y)] for y in (it["year"] - 1, it["year"] + 1) if (key, y) in facts]
            hit = near[0] if len(near) == 1 else None
        if hit is not None:
            it.update(hit)
            matched += 1
    return matched / len(items) if items else 0.0
