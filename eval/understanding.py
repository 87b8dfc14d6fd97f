"""How well Tailor understands one free-form request (issue 15): the state it reads, the
picks it makes, and the time it takes.

A request file has one JSON object a line: ``{"id", "text", "expect", "accept"?}``.
``expect`` holds the slots of the state a person would write down for the message,
only those that are not at their default; ``accept`` holds other readings a person
would also agree with. The slots (``SLOTS``): ``liked``/``disliked`` (catalog titles as
in ``Item.title``), ``genres``, ``genre_or`` (true only for "X or Y"),
``excluded_genres``, ``year_min``, ``year_max``, ``people`` (as credited), ``moods``
(keys of ``agent/domain/movielens/vocabulary.json``), ``outside`` (titles the reference film
table knows but the catalog lacks, as the user named them), ``not_found`` (titles nothing knows),
``lesser_known``, ``well_liked``, ``popular`` ("something everyone has seen": the state's
``tail_boost == 0``), ``off_topic`` and ``vague`` (nothing usable: Tailor asks back).

Scoring rules
-------------
Values. List slots compare as sets: genres, people and moods exactly; liked and disliked
by catalog title; outside and not_found by ``title_key`` (case, accents, articles and a
trailing "(1999)" ignored). Scalar slots compare by equality; ``null`` is "no bound".

Accept, two forms, which combine:

- ``accept[slot] = [alternative, ...]``: each alternative is a whole value of the slot
  (``[]`` or ``null`` = "the default is fine too"). The slot is right when the parsed
  value matches the expected one or any alternative. Slots vary independently:
  ``"year_max": [1980]`` lets "before 1980" end in 1979 or 1980.
- ``accept["readings"] = [{slot: value, ...}, ...]``: whole other readings, each one
  ``expect`` with those slots replaced. For slots that go together: "something scary"
  is genres Horror, or the scary mood instead (``{"genres": [], "moods": ["scary"]}``),
  or both (``{"moods": ["scary"]}``), but not neither.

Inside a list value a nested list is a choice: at least one of its values must be there
and any of them may be. ``"excluded_genres": [[["Action", "Crime", "Horror", "War"]]]``
reads "no violence" as excluding one or more of those four genres and nothing else.

Agreement. A request agrees when, in some reading, every slot is right. Every slot
counts: an extra liked title, genre, excluded genre, year bound, person, mood, unknown
title or flag that was not expected is a disagreement. Two exceptions: query words are
not a slot, and an unasked ``well_liked`` or ``popular`` is accepted (``SOFT``: ranking
priors, not filters; "well-liked films with Tom Hanks" is still what was asked) unless
the reading asks for lesser-known films, which they contradict. Such an extra keeps its
expected value below: it is a false positive, and the picks need not meet it.

Precision and recall are counted against the resolved expectation: the reading that
agreed (else the one with the fewest wrong slots, the first on a tie), where each right
slot takes the parsed value (an accepted alternative costs nothing) and each wrong slot
its expected value (choices spelled out in full). Micro over values: each value of a
list slot counts; a scalar counts one value when it is not at its default, so a wrong
year is one false positive and one false negative.

Fit. ``Recommender.turn`` answers the message, and its picks are checked against the
resolved expectation as a ``DialogueState`` (``agent.understand.state.satisfies``), plus:
lesser_known, no head item; popular, only head items; well_liked, only films rated
``WELL_LIKED_MEAN`` or more on average by ``WELL_LIKED_RATINGS`` or more users; outside
titles, a genre shared with one of them (their genres in the reference table). Vague and
off-topic requests fit only with no picks. Otherwise, with n catalog films meeting the
expectation: n >= top_k, every pick must meet it (and there must be picks); 0 < n <
top_k, at least one pick must (the rest may come from a relaxation the reply announces);
n == 0, any answer fits.

Time. ``parse_s`` is the rules (or the extractor) plus ``merge``; ``turn_s`` the whole
turn. Both are measured after one warm-up turn, whose time is reported on its own.

The fit rule, the run through the agent and the report are in ``eval.understanding_run``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from agent.domain.text import title_key

HELDOUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "requests_heldout.jsonl"
TARGET = 0.85  # issue 15: share of held-out requests that agree and whose picks fit
LIST_SLOTS = ("liked", "disliked", "genres", "excluded_genres", "people", "moods", "outside",
              "not_found")
DEFAULT = {"liked": [], "disliked": [], "genres": [], "genre_or": False, "excluded_genres": [],
           "year_min": None, "year_max": None, "people": [], "moods": [], "outside": [],
           "not_found": [], "lesser_known": False, "well_liked": False, "popular": False,
           "off_topic": False, "vague": False}
SLOTS = tuple(DEFAULT)
SOFT = ("well_liked", "popular")  # accepted when not asked for (module docstring)
WELL_LIKED_RATINGS = 50
WELL_LIKED_MEAN = 3.5  # the catalog's mean rating is 3.53
WARM_UP = "something about lighthouses and robots"  # in neither request file


def load_requests(path: Path) -> list[dict]:
    """Read a request file; raises ``ValueError`` naming the line of a malformed request."""
    requests, ids = [], set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            req = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON ({e})") from None
        unknown = set(req) - {"id", "text", "expect", "accept"}
        accept = req.get("accept", {})
        unknown |= set(req.get("expect", {})) - set(SLOTS)
        unknown |= set(accept) - set(SLOTS) - {"readings"}
        unknown |= {k for r in accept.get("readings", []) for k in r} - set(SLOTS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; slots are {SLOTS}")
        if not req.get("id") or not str(req.get("text", "")).strip() or req["id"] in ids:
            raise ValueError(f"{where}: each request needs a unique id and a text")
        ids.add(req["id"])
        requests.append(req)
    return requests


def _keys(slot: str, values) -> set:
    if slot in ("outside", "not_found"):
        return {title_key(v) for v in values}
    return set(values)


def value_matches(slot: str, got, want) -> bool:
    """Whether a parsed slot value matches an expected one (nested lists are choices).

    >>> value_matches("genres", ["Comedy", "Crime"], ["Crime", "Comedy"])
    True
    >>> violence = [["Action", "Crime", "Horror", "War"]]
    >>> [value_matches("excluded_genres", g, violence) for g in (["War"], [], ["War", "Drama"])]
    [True, False, False]
    >>> value_matches("outside", ["The Matrix (1999)"], ["the matrix"])
    True
    >>> value_matches("year_max", 1979, 1980)
    False
    """
    if slot not in LIST_SLOTS:
        return got == want
    have = _keys(slot, got)
    required = _keys(slot, [v for v in want if not isinstance(v, list)])
    choices = [_keys(slot, v) for v in want if isinstance(v, list)]
    allowed = required.union(*choices)
    return required <= have <= allowed and all(c & have for c in choices)


def readings(request: dict) -> list[dict]:
    """Every reading of a request, each with all slots: ``expect``, then each of
    ``accept["readings"]`` laid over it."""
    base = {**DEFAULT, **request.get("expect", {})}
    return [base] + [{**base, **r} for r in request.get("accept", {}).get("readings", [])]


def _spelled_out(value):
    """A value with its choices spelled out in full (what a wrong slot is scored against)."""
    if not isinstance(value, list):
        return value
    flat = [v for x in value for v in (x if isinstance(x, list) else [x])]
    return list(dict.fromkeys(flat))


def resolve(request: dict, got: dict) -> tuple[dict, list[str]]:
    """The expectation ``got`` is scored against, and the slots ``got`` has wrong.

    >>> req = {"expect": {"genres": ["Horror"]},
    ...        "accept": {"readings": [{"genres": [], "moods": ["scary"]}]}}
    >>> want, wrong = resolve(req, {**DEFAULT, "moods": ["scary"]})
    >>> want["genres"], want["moods"], wrong
    ([], ['scary'], [])
    >>> resolve(req, DEFAULT)[1]
    ['genres']
    >>> resolve({"expect": {"lesser_known": True}}, {**DEFAULT, "lesser_known": True,
    ...                                              "popular": True})[1]
    ['popular']
    """
    alternatives = {k: v for k, v in request.get("accept", {}).items() if k != "readings"}

    def right(slot, reading, soft=False) -> bool:
        options = [reading[slot], *alternatives.get(slot, []), *([True] if soft else [])]
        return any(value_matches(slot, got[slot], w) for w in options)

    best = None
    for reading in readings(request):
        soft = not reading["lesser_known"]
        wrong = [s for s in SLOTS if not right(s, reading, soft and s in SOFT)]
        if best is None or len(wrong) < len(best[1]):
            best = (reading, wrong)
        if not wrong:
            break
    reading, wrong = best
    # A soft extra keeps its expected value: a false positive, not required of the picks.
    return {s: got[s] if right(s, reading) else _spelled_out(reading[s]) for s in SLOTS}, wrong


def slot_counts(slot: str, got, want) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of one slot.

    >>> slot_counts("genres", ["Crime", "Horror"], ["Crime", "Comedy"])
    (1, 1, 1)
    >>> slot_counts("year_max", 1979, 1979), slot_counts("year_max", 1980, 1979)
    ((1, 0, 0), (0, 1, 1))
    >>> slot_counts("well_liked", False, False), slot_counts("vague", True, False)
    ((0, 0, 0), (0, 1, 0))
    """
    if slot in LIST_SLOTS:
        have, need = _keys(slot, got), _keys(slot, want)
        return len(have & need), len(have - need), len(need - have)
    default = DEFAULT[slot]
    hit = got == want and want != default
    return int(hit), int(got != default and not hit), int(want != default and not hit)


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall and F1 (None where undefined: nothing predicted, nothing expected).

    >>> {k: round(v, 3) for k, v in prf(3, 1, 2).items()}
    {'precision': 0.75, 'recall': 0.6, 'f1': 0.667}
    >>> prf(0, 0, 0)["precision"] is None
    True
    """
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
    return {"precision": p, "recall": r, "f1": f1}


def picks_fit(pick_ok: list[bool], n_fitting: int, top_k: int, silent: bool) -> bool:
    """The fit rule (module docstring) on the per-pick verdicts.

    >>> picks_fit([], 0, 3, silent=True), picks_fit([True], 0, 3, silent=True)
    (True, False)
    >>> picks_fit([True, True, False], 40, 3, False), picks_fit([True, False, False], 2, 3, False)
    (False, True)
    >>> picks_fit([], 40, 3, False), picks_fit([], 0, 3, False)
    (False, True)
    """
    if silent:
        return not pick_ok
    if n_fitting == 0:
        return True
    if n_fitting >= top_k:
        return bool(pick_ok) and all(pick_ok)
    return any(pick_ok)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank).

    >>> percentile([0.1, 0.2, 0.3, 0.4], 95), percentile([], 50) is None
    (0.4, True)
    """
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def state_slots(state, parsed, items: dict, vague: bool) -> dict:
    """The slots of a parsed state. ``vague``: the turn would ask back (no constraint)."""
    return {"liked": [items[i].title for i in state.liked if i in items],
            "disliked": [items[i].title for i in state.disliked if i in items],
            "genres": list(state.genres), "genre_or": state.genre_or,
            "excluded_genres": list(state.excluded_genres),
            "year_min": state.year_min, "year_max": state.year_max,
            "people": list(state.people), "moods": list(state.moods),
            "outside": list(state.outside), "not_found": list(state.not_found),
            "lesser_known": state.lesser_known, "well_liked": state.well_liked,
            "popular": state.tail_boost == 0.0,
            "off_topic": bool(parsed.off_topic) and vague,
            "vague": vague and not parsed.off_topic}


def failure_kinds(case: dict) -> list[str]:
    """Names for what went wrong in one scored case: ``"genres missing"``, ``"year_max
    wrong"``, ``"picks: excluded_genres"``, ...

    >>> failure_kinds({"wrong": ["genres", "vague"], "resolved": {**DEFAULT, "genres": ["Crime"]},
    ...                "got": {**DEFAULT, "genres": ["Comedy"], "vague": True},
    ...                "fit": False, "picks": [], "bad_picks": {}})
    ['genres missing', 'genres extra', 'vague extra', 'picks: none given']
    """
    kinds = []
    for slot in case["wrong"]:
        got, want = case["got"][slot], case["resolved"][slot]
        if slot in LIST_SLOTS:
            have, need = _keys(slot, got), _keys(slot, want)
            kinds += [f"{slot} missing"] * bool(need - have) + [f"{slot} extra"] * bool(have - need)
        elif got == DEFAULT[slot] or want == DEFAULT[slot]:
            kinds.append(f"{slot} {'missing' if got == DEFAULT[slot] else 'extra'}")
        else:
            kinds.append(f"{slot} wrong")
    if case.get("error"):
        kinds.append("error")
    elif not case["fit"]:
        broken = sorted({p for ps in case["bad_picks"].values() for p in ps})
        kinds += [f"picks: {p}" for p in broken] or ["picks: none given"]
    return kinds


def summarize(cases: list[dict]) -> dict:
    """Shares, per-slot precision/recall/F1 (micro over values) and times of scored cases."""
    n = len(cases)
    counts = {s: [0, 0, 0] for s in SLOTS}
    for c in cases:
        for s in SLOTS:
            for k, v in enumerate(slot_counts(s, c["got"][s], c["resolved"][s])):
                counts[s][k] += v
    total = [sum(c[k] for c in counts.values()) for k in range(3)]
    slots = {s: {"tp": tp, "fp": fp, "fn": fn, **prf(tp, fp, fn)}
             for s, (tp, fp, fn) in {**counts, "all": total}.items()}
    times = {}
    for key in ("parse_s", "turn_s"):
        values = [c[key] for c in cases if c.get(key) is not None]
        times[key] = {"mean": sum(values) / len(values) if values else None,
                      "p95": percentile(values, 95), "max": max(values, default=None)}
    kinds = Counter(k for c in cases for k in failure_kinds(c))
    examples = {}
    for c in cases:
        for k in failure_kinds(c):
            examples.setdefault(k, c["id"])
    return {"n": n, "agree": sum(c["agree"] for c in cases) / n if n else None,
            "fit": sum(c["fit"] for c in cases) / n if n else None,
            "agree_and_fit": sum(c["agree"] and c["fit"] for c in cases) / n if n else None,
            "errors": sum(bool(c.get("error")) for c in cases), "slots": slots, "time": times,
            "failure_kinds": [{"kind": k, "count": v, "example": examples[k]}
                              for k, v in kinds.most_common()]}


def score_case(request: dict, got: dict, picks: list, judge) -> dict:
    """One request scored: its resolved expectation, wrong slots, agreement and fit
    (``judge``: ``eval.understanding_run.PickJudge``)."""
    want, wrong = resolve(request, got)
    verdict = judge.judge(picks, want)
    return {"id": request["id"], "text": request["text"], "expect": request.get("expect", {}),
            "accept": request.get("accept", {}), "resolved": want, "got": got, "wrong": wrong,
            "agree": not wrong, "picks": [it.label for it in picks], **verdict}


