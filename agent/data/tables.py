"""Read a table of items, interactions or users from CSV/TSV, JSON lines, Parquet or
RecBole atomic files (``.item``/``.inter``/``.user`` with ``name:type`` headers), into
rows that remember the line they came from, so that every error names file, line and
field."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import InputError

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
ATOMIC_SUFFIXES = (".item", ".inter", ".user")
PARQUET_SUFFIXES = (".parquet", ".pq")
SUFFIXES = tuple(CSV_SUFFIXES) + JSONL_SUFFIXES + ATOMIC_SUFFIXES + PARQUET_SUFFIXES


class DataFileError(InputError):
    """A data file cannot be imported; the message names the file, line and field."""


@dataclass
class Table:
    """Rows of one file. ``lines[i]`` is where row ``i`` starts (the file's line, or the
    row number for Parquet); ``types`` holds RecBole's declared column types."""

    path: Path
    columns: list[str]
    rows: list[dict]
    lines: list[int]
    types: dict[str, str] = field(default_factory=dict)

    def where(self, i: int, column: str | None = None) -> str:
        unit = "row" if self.path.suffix in PARQUET_SUFFIXES else "line"
        at = f"{self.path.name} {unit} {self.lines[i]}"
        return f"{at}, field {column!r}" if column else at


def read_table(path: Path) -> Table:
    """The rows of ``path``; a clear ``DataFileError`` for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFileError(f"{path}: unknown format {suffix or '(no suffix)'}; use one of "
                            f"{', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path} is empty")
    if suffix in PARQUET_SUFFIXES:
        table = _read_parquet(path)
    else:
        text = _text(path)
        if suffix in CSV_SUFFIXES:
            table = _read_csv(path, text, CSV_SUFFIXES[suffix])
        elif suffix in ATOMIC_SUFFIXES:
            table = _read_atomic(path, text)
        else:
            table = _read_jsonl(path, text)
    if not table.rows:
        raise DataFileError(f"{path} has a header but no rows")
    return table


def _text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataFileError(
            f"{path} line {line} is not UTF-8 (byte 0x{raw[e.start]:02x}); save the file as "
            f"UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}`") from None


def _read_csv(path: Path, text: str, delimiter: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFileError(f"{path} is empty") from None
    columns = [c.strip() for c in header]
    _check_header(path, columns)
    rows, lines = [], []
    start = reader.line_num + 1
    try:
        for values in reader:
            here, start = start, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(columns):
                raise DataFileError(f"{path.name} line {here}: {len(values)} fields, but the "
                                    f"header has {len(columns)}")
            rows.append(dict(zip(columns, values)))
            lines.append(here)
    except csv.Error as e:
        raise DataFileError(f"{path.name} line {reader.line_num}: {e}") from None
    return Table(path, columns, rows, lines)


def _read_jsonl(path: Path, text: str) -> Table:
    rows, lines, columns = [], [], {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFileError(f"{path.name} line {n} is not JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise DataFileError(f"{path.name} line {n}: expected a JSON object, got "
                                f"{type(row).__name__}")
        columns.update(dict.fromkeys(row))
        rows.append(row)
        lines.append(n)
    return Table(path, list(columns), rows, lines)


ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def _read_atomic(path: Path, text: str) -> Table:
    """RecBole's atomic files: tab-separated, ``name:type`` headers; ``*_seq`` values are
    space-separated lists."""
    text_lines = text.splitlines()
    header = text_lines[0].split("\t")
    columns, types = [], {}
    for h in header:
        name, _, kind = h.strip().partition(":")
        if kind not in ATOMIC_TYPES:
            raise DataFileError(f"{path.name} line 1: column {h.strip()!r} needs a type, one of "
                                f"{', '.join(ATOMIC_TYPES)} (RecBole's name:type header)")
        columns.append(name)
        types[name] = kind
    _check_header(path, columns)
    rows, lines = [], []
    for n, line in enumerate(text_lines[1:], 2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(columns):
            raise DataFileError(f"{path.name} line {n}: {len(values)} fields, but the header "
                                f"has {len(columns)}")
        row = {}
        for c, v in zip(columns, values):
            row[c] = _atomic_value(path, n, c, types[c], v)
        rows.append(row)
        lines.append(n)
    return Table(path, columns, rows, lines, types)


def _atomic_value(path, n, column, kind, value: str):
    if kind == "token":
        return value.strip()
    if kind == "token_seq":
        return value.split()
    try:
        if kind == "float":
            return float(value) if value.strip() else None
        return [float(v) for v in value.split()]
    except ValueError:
        raise DataFileError(f"{path.name} line {n}, field {column!r}: {value!r} is not a "
                            f"number (the header says {kind})") from None


def _read_parquet(path: Path) -> Table:
    try:
        import pandas as pd
        frame = pd.read_parquet(path)
    except ImportError as e:
        raise DataFileError(f"reading {path.name} needs pyarrow: pip install pyarrow ({e})") from None
    except Exception as e:  # pyarrow's own errors: a truncated or foreign file
        raise DataFileError(f"{path} is not a readable Parquet file: {e}") from None
    columns = [str(c) for c in frame.columns]
    _check_header(path, columns)
    rows = [{c: _plain(v) for c, v in zip(columns, rec)}
            for rec in frame.itertuples(index=False, name=None)]
    return Table(path, columns, rows, list(range(1, len(rows) + 1)))


def _plain(value):
    """numpy scalars and arrays as plain Python values; NaN and NA as None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:
        return None
    if value is not None and type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _check_header(path: Path, columns: list[str]) -> None:
    if not columns or not any(columns):
        raise DataFileError(f"{path.name} line 1: no column names")
    seen = set()
    for c in columns:
        if not c:
            raise DataFileError(f"{path.name} line 1: a column has no name")
        if c in seen:
            raise DataFileError(f"{path.name} line 1: column {c!r} appears twice")
        seen.add(c)
