"""Requests about a catalog's own facets, read from the catalog's own values.

"a blue wool jumper under 50, not Nike" names values of the colour, material and
category facets (wanted), a brand (excluded: a negation comes before it in its clause)
and a bound on the price range. The words are the values the items have, not a word
list; only the facets the schema leaves without a film role (``requestable``) are read
here, so MovieLens' genres, years and people keep their own rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.understand.parse import negated

_MONEY = r"(?:[£$€]|pounds?|quid|euros?|dollars?|bucks|gbp|eur|usd)"
_NUMBER = rf"(?:{_MONEY}\s*)?(\d+(?:[.,]\d+)?)\s*(k\b)?(?:\s*{_MONEY})?"
_BETWEEN = re.compile(rf"\b(?:between|from)\s+{_NUMBER}\s*(?:and|to|-)\s*{_NUMBER}", re.I)
_AT_MOST = re.compile(rf"(?:\b(?:under|below|less than|cheaper than|up to|at most|max(?:imum)?"
                      rf"|no more than|not more than|within)\b|<=?)\s*{_NUMBER}", re.I)
_AT_LEAST = re.compile(rf"(?:\b(?:over|above|more than|at least|min(?:imum)?|no less than)\b"
                       rf"|>=?)\s*{_NUMBER}", re.I)

# A range measured in minutes (a film's running time) reads only numbers with a time unit:
# "under 2 hours", "less than 100 minutes"; a bare number is a year or a price.
_TIME = r"(\d+(?:[.,]\d+)?)\s*(hours?|hrs?|h|minutes?|mins?|min)\b"
_TIME_AT_MOST = re.compile(r"\b(?:under|below|less than|shorter than|up to|at most|max(?:imum)?"
                           rf"|no more than|not more than|no longer than|within)\s*{_TIME}", re.I)
_TIME_AT_LEAST = re.compile(r"\b(?:over|above|more than|longer than|at least|min(?:imum)?"
                            rf"|no less than|no shorter than)\s*{_TIME}", re.I)
_TIME_WORDS = ((re.compile(r"\ban hour and a half\b", re.I), "90 minutes"),
               (re.compile(r"\bhalf an hour\b", re.I), "30 minutes"),
               (re.compile(r"\b(?:an|one) hour\b", re.I), "1 hour"),
               (re.compile(r"\btwo and a half hours\b", re.I), "150 minutes"),
               (re.compile(r"\btwo hours\b", re.I), "2 hours"),
               (re.compile(r"\bthree hours\b", re.I), "3 hours"))
TIME_UNITS = ("min", "minutes")


def _minutes(number: str, unit: str) -> float:
    value = float(number.replace(",", "."))
    return value * 60 if unit.lower().startswith("h") else value


@dataclass(frozen=True)
class FacetRequest:
    """What one message asks of the facets (see ``DialogueState.facets``)."""

    wanted: tuple[tuple[str, str], ...] = ()
    excluded: tuple[tuple[str, str], ...] = ()
    bounds: tuple[tuple[str, float | None, float | None], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.wanted or self.excluded or self.bounds)


def _amount(number: str, thousands: str | None) -> float:
    value = float(number.replace(",", "."))
    return value * 1000 if thousands else value


def _phrase_pattern(value: str) -> re.Pattern:
    """A value as whole words, plural allowed: "jumper" matches "jumpers"."""
    words = r"[\s-]+".join(re.escape(w) for w in re.split(r"[\s-]+", value.lower()) if w)
    return re.compile(rf"(?<![\w'-]){words}(?:e?s)?(?![\w'-])", re.I)


class FacetIndex:
    """The requestable facets' values, matched in free text (longest value first)."""

    def __init__(self, schema, values: dict[str, tuple[str, ...]]):
        self.schema = schema
        entries = [(v, f.field) for f in schema.requestable if f.kind != "range"
                   for v in values.get(f.field, ()) if str(v).strip()]
        entries.sort(key=lambda e: -len(e[0]))
        self._patterns = [(_phrase_pattern(v), f, v) for v, f in entries]
        self.values = {f.field: tuple(values.get(f.field, ())) for f in schema.requestable
                       if f.kind != "range"}
        self.ranges = tuple(f for f in schema.requestable if f.kind == "range")

    @classmethod
    def for_catalog(cls, catalog) -> FacetIndex | None:
        """The index of ``catalog``'s requestable facets, or None when it has none."""
        if not catalog.schema.requestable:
            return None
        return cls(catalog.schema, catalog.facet_values)

    def parse(self, text: str) -> FacetRequest:
        found, taken = [], []
        for pattern, field, value in self._patterns:
            for m in pattern.finditer(text):
                if any(a < m.end() and m.start() < b for a, b in taken):
                    continue  # inside a longer value already found ("t-shirt", not "shirt")
                taken.append((m.start(), m.end()))
                found.append((m.start(), field, value))
        found.sort()  # in the order the message names them
        wanted = [(f, v) for at, f, v in found if not negated(text, at)]
        excluded = [(f, v) for at, f, v in found if negated(text, at)]
        return FacetRequest(tuple(dict.fromkeys(wanted)), tuple(dict.fromkeys(excluded)),
                            self._bounds(text))

    def with_phrases(self, asked: FacetRequest, text: str, rest: str, vocab
                     ) -> tuple[FacetRequest, list]:
        """``asked`` with what the vocabulary's phrases in ``rest`` (``text`` with titles
        blanked) ask, and their spans: a range's bound where the message gave no number
        for it ("nothing too long": the running time at most 120 minutes); any value of a
        category but some ("a foreign film": a language other than English; negated, those
        values)."""
        from agent.understand.vocabulary import find_phrases

        fields = {f.field for f in self.ranges} - {f for f, _, _ in asked.bounds}
        bounds, wanted, spans = {}, [], []
        for r in vocab.ranges.values():
            for m in find_phrases(rest, r.words) if r.field in fields else ():
                if not negated(text, m.start()):
                    bounds.setdefault(r.field, (r.field, r.at_least, r.at_most))
                    spans.append(m.span())
        for v in vocab.values.values():
            for m in find_phrases(rest, v.words) if v.field in self.values else ():
                keep = negated(text, m.start())  # "nothing foreign": those values only
                wanted += [(v.field, x) for x in self.values[v.field]
                           if (x in v.other_than) == keep and (v.field, x) not in asked.excluded]
                spans.append(m.span())
        if bounds or wanted:
            asked = FacetRequest(tuple(dict.fromkeys(asked.wanted + tuple(wanted))),
                                 asked.excluded, asked.bounds + tuple(bounds.values()))
        return asked, spans

    def _bounds(self, text: str) -> tuple[tuple[str, float | None, float | None], ...]:
        """Bounds on the range a number is about: the range named in its clause
        ("price under 50"), else the only (or first) requestable range; a number with a
        time unit is about the range measured in minutes ("under 2 hours")."""
        out: dict[str, list] = {}
        spans = []  # numbers already read
        timed = next((f for f in self.ranges if f.unit in TIME_UNITS), None)
        if timed is not None:
            for pattern, words in _TIME_WORDS:
                text = pattern.sub(words, text)
            for pattern, side in ((_TIME_AT_MOST, 1), (_TIME_AT_LEAST, 0)):
                for m in pattern.finditer(text):
                    out.setdefault(timed.field, [None, None])[side] = _minutes(m[1], m[2])
                    spans.append((m.start(), m.end()))
        if not [f for f in self.ranges if f is not timed]:
            return tuple((f, lo, hi) for f, (lo, hi) in out.items())
        for m in _BETWEEN.finditer(text):
            if any(a <= m.start() < b for a, b in spans):
                continue
            lo, hi = _amount(m.group(1), m.group(2)), _amount(m.group(3), m.group(4))
            out.setdefault(self._range_near(text, m.start()), [None, None])[:] = \
                [min(lo, hi), max(lo, hi)]
            spans.append((m.start(), m.end()))
        for pattern, side in ((_AT_MOST, 1), (_AT_LEAST, 0)):
            for m in pattern.finditer(text):
                if any(a <= m.start() < b for a, b in spans):
                    continue
                bound = out.setdefault(self._range_near(text, m.start()), [None, None])
                bound[side] = _amount(m.group(1), m.group(2))
        return tuple((f, lo, hi) for f, (lo, hi) in out.items())

    def _range_near(self, text: str, pos: int) -> str:
        untimed = [f for f in self.ranges if f.unit not in TIME_UNITS]
        clause = text[max(0, pos - 40):pos + 40].lower()
        for f in untimed:
            if re.search(rf"\b{re.escape(f.name.lower())}\b", clause):
                return f.field
        return untimed[0].field
