"""``tailor eval --dialogue-suite``: scripted multi-turn dialogues with checkable expectations.

The dialogues are data (``eval/dialogues.json``): what a person says turn by turn, or a
like/dislike click on a pick of the last answer, and what they expect of the reply and
the dialogue state. ``load_suite`` validates the file against the catalog (an unknown
key, title, person, genre or mood is an error naming the dialogue and turn);
``run_suite`` plays every dialogue through a real ``Recommender`` and writes
``report.json`` and ``report.md``. The checks live in ``eval.dialogue_checks``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from agent.domain.movielens.film import credits
from agent.errors import ConfigError
from agent.types import DialogueState
from eval.dialogue_checks import CHECKS, INVARIANTS, Seen

log = logging.getLogger(__name__)

MIN_TURNS, MAX_TURNS = 3, 5
FEEDBACK = ("like", "dislike")
ASKS = ("clarify", "off_topic")


def packaged_suite() -> Path:
    """The dialogues shipped with the package (``eval/dialogues.json``)."""
    return Path(str(resources.files("eval").joinpath("dialogues.json")))


@dataclass(frozen=True)
class Turn:
    say: str | None  # a message, or None for a rating click
    feedback: tuple[str, int] | None  # ("like" | "dislike", 1-based pick of the last answer)
    expect: dict  # key -> value resolved for the check (titles as item ids)
    written: dict  # the expectations as the file writes them (for the report)


@dataclass(frozen=True)
class Dialogue:
    id: str
    about: tuple[str, ...]
    turns: tuple[Turn, ...]


class _Where:
    """Names the place in the file an error is about."""

    def __init__(self, path, dialogue="?", turn=None):
        self.at = f"{path}: dialogue {dialogue!r}" + (f", turn {turn}" if turn else "")

    def fail(self, what: str):
        raise ConfigError(f"{self.at}: {what}")


def catalog_names(catalog) -> dict:
    """What values may name: title and label -> item ids, genres, people, moods."""
    from agent.understand.vocabulary import load_vocabulary

    titles: dict[str, list[int]] = {}
    for it in catalog.items.values():
        titles.setdefault(it.title, []).append(it.id)
        titles.setdefault(it.label, []).append(it.id)
    return {"titles": titles,
            "genres": {g for it in catalog.items.values() for g in it.values("genres")},
            "people": {p for it in catalog.items.values() for p in credits(it)},
            "moods": set(load_vocabulary().moods), "items": catalog.items}


def resolve(kind: str, value, names: dict, where: _Where):
    """``value`` checked against its ``kind``; titles come back as item ids."""
    if kind in ("titles", "genres", "people", "moods", "phrases"):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v
                                                                for v in value):
            where.fail(f"expected a non-empty list of {kind}, got {value!r}")
        if kind == "titles":
            out = []
            for t in value:
                ids = names["titles"].get(t)
                if not ids:
                    where.fail(f"title {t!r} is not in the catalog")
                if len(ids) > 1:
                    labels = " or ".join(names["items"][i].label for i in ids)
                    where.fail(f"title {t!r} is ambiguous; write {labels}")
                out.append(ids[0])
            return tuple(out)
        if kind != "phrases":
            unknown = [v for v in value if v not in names[kind]]
            if unknown:
                what = {"genres": "catalog genres", "people": "catalog people (directors or "
                        "cast)", "moods": "vocabulary moods"}[kind]
                where.fail(f"{', '.join(map(repr, unknown))} not among the {what}")
        return tuple(value)
    ok = {"year": value is None or (isinstance(value, int) and not isinstance(value, bool)),
          "bool": isinstance(value, bool), "true": value is True,
          "count": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
          "position": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
          "fraction": isinstance(value, (int, float)) and not isinstance(value, bool)
          and 0 < value <= 1, "ask": value in ASKS}[kind]
    if not ok:
        hint = {"year": "a year or null", "bool": "true or false", "true": "true",
                "count": "a count >= 0", "position": "a pick position >= 1",
                "fraction": "a share in (0, 1]", "ask": " or ".join(ASKS)}[kind]
        where.fail(f"expected {hint}, got {value!r}")
    return value


def parse_turn(raw, names: dict, where: _Where) -> Turn:
    if not isinstance(raw, dict):
        where.fail("a turn is an object with \"say\" (or \"feedback\" and \"pick\") and \"expect\"")
    extra = set(raw) - {"say", "feedback", "pick", "expect"}
    if extra:
        where.fail(f"unknown turn field(s) {sorted(extra)}")
    say, feedback = raw.get("say"), None
    if say is None:
        if raw.get("feedback") not in FEEDBACK or resolve("position", raw.get("pick"), names,
                                                          where) is None:
            where.fail("a turn needs \"say\" or \"feedback\" (like/dislike) with \"pick\"")
        feedback = (raw["feedback"], raw["pick"])
    elif not isinstance(say, str) or not say.strip() or "feedback" in raw:
        where.fail("\"say\" must be a non-empty message (and not come with \"feedback\")")
    expect = raw.get("expect", {})
    if not isinstance(expect, dict):
        where.fail("\"expect\" must be an object")
    resolved = {}
    for key, value in expect.items():
        check = CHECKS.get(key)
        if check is None:
            where.fail(f"unknown expectation {key!r} (known: {', '.join(sorted(CHECKS))})")
        if feedback and check.needs_reply:
            where.fail(f"{key!r} checks a reply, and a feedback turn has none")
        resolved[key] = resolve(check.kind, value, names, where)
    return Turn(say, feedback, resolved, dict(expect))


def load_suite(path: Path, catalog) -> list[Dialogue]:
    """The dialogues of ``path``, validated against ``catalog``; raises ``ConfigError``
    naming the dialogue and turn of the first problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read the dialogue suite {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("dialogues"), list):
        raise ConfigError(f"{path}: expected {{\"dialogues\": [...]}}")
    names, out, ids = catalog_names(catalog), [], set()
    for d in data["dialogues"]:
        where = _Where(path, d.get("id", "?") if isinstance(d, dict) else "?")
        if not isinstance(d, dict) or not isinstance(d.get("id"), str) or d["id"] in ids:
            where.fail("each dialogue needs a unique string \"id\"")
        extra = set(d) - {"id", "about", "turns"}
        if extra:
            where.fail(f"unknown dialogue field(s) {sorted(extra)}")
        turns = d.get("turns")
        if not isinstance(turns, list) or not MIN_TURNS <= len(turns) <= MAX_TURNS:
            where.fail(f"a dialogue has {MIN_TURNS} to {MAX_TURNS} turns")
        ids.add(d["id"])
        out.append(Dialogue(d["id"], tuple(d.get("about", ())), tuple(
            parse_turn(t, names, _Where(path, d["id"], k)) for k, t in enumerate(turns, 1))))
    if not out:
        raise ConfigError(f"{path}: no dialogues")
    return out


def check_turn(turn: Turn, seen: Seen) -> list[dict]:
    """Every expectation of ``turn`` (and, when it answered, the invariants) on ``seen``."""
    checks = [(key, turn.written[key], CHECKS[key].fn(value, seen))
              for key, value in turn.expect.items()]
    if turn.say is not None:
        checks += [(name, True, fn(True, seen)) for name, fn in INVARIANTS.items()]
    return [{"check": k, "expected": v, "ok": not why, "detail": why} for k, v, why in checks]


def quality_shares(catalog) -> dict[int, float]:
    """Each item's rank by the catalog's quality prior, as a share of the catalog (the best
    film: 1/n)."""
    order = sorted(catalog.quality, key=lambda i: -catalog.quality[i])
    return {i: (k + 1) / len(order) for k, i in enumerate(order)}


def run_dialogue(rec, dialogue: Dialogue, catalog, shares, bar=None) -> dict:
    """Play ``dialogue`` through ``rec``; a turn that raises fails and ends the dialogue."""
    from agent.interfaces.sessions import apply_feedback

    items, state, shown, turns = catalog.items, DialogueState(), set(), []
    head = frozenset(catalog.head)
    for k, turn in enumerate(dialogue.turns, 1):
        previous = tuple(items[i] for i in state.last if i in items)
        record = {"turn": k, "say": turn.say, "feedback": turn.feedback, "reply": "", "picks": []}
        t = time.perf_counter()
        try:
            if turn.say is not None:
                reply = rec.turn(turn.say, state)
                text, new = reply.text, reply.state
                picks = tuple(r.item for r in reply.recommendations)
            else:
                value, pos = turn.feedback
                if pos > len(state.last):
                    raise ConfigError(f"no pick {pos} to {value}: the last answer had "
                                      f"{len(state.last)}")
                text, picks, new = "", (), apply_feedback(state, state.last[pos - 1], value)
        except Exception as e:  # the eval runner's edge: a crash is a failed turn, reported
            log.exception("dialogue %s, turn %d failed", dialogue.id, k)
            record["checks"] = [{"check": "turn runs", "expected": True, "ok": False,
                                 "detail": f"{type(e).__name__}: {e}"}]
            turns.append(record)
            break
        finally:
            record["seconds"] = time.perf_counter() - t
            if bar is not None:
                bar.update(1)
        seen = Seen(text, picks, new, previous, frozenset(shown), items, shares, head)
        record.update(reply=text, picks=[p.label for p in picks], state=_state_words(new, items),
                      checks=check_turn(turn, seen))
        turns.append(record)
        shown |= {p.id for p in picks}
        state = new
    for k in range(len(turns) + 1, len(dialogue.turns) + 1):  # after a crash
        turns.append({"turn": k, "say": dialogue.turns[k - 1].say, "checks": [
            {"check": "turn runs", "expected": True, "ok": False, "detail": "not run: an "
             "earlier turn failed"}]})
        if bar is not None:
            bar.update(1)
    for t in turns:
        t["passed"] = all(c["ok"] for c in t["checks"])
    return {"id": dialogue.id, "about": list(dialogue.about), "turns": turns,
            "passed": all(t["passed"] for t in turns)}


def _state_words(state: DialogueState, items) -> dict:
    """The state's non-empty slots, titles by name (what a report reader needs)."""
    out = {}
    for k, v in state.to_json().items():
        if k in ("shown", "last") or v in ((), [], None, False, ""):
            continue
        out[k] = [items[i].label for i in v if i in items] if k in ("liked", "disliked") else v
    return out


def summarize(results: list[dict]) -> dict:
    """Pass counts and rates: dialogues fully passed, turns, checks, and per ``about`` tag.

    >>> def d(ok):
    ...     return {"about": ["x"], "passed": ok, "turns": [{"passed": ok, "checks": [{"ok": ok}]}]}
    >>> r = [d(True), d(False)]
    >>> s = summarize(r); s["dialogues"], s["checks"]["rate"], s["by_about"]["x"]
    ({'passed': 1, 'total': 2, 'rate': 0.5}, 0.5, {'passed': 1, 'total': 2, 'rate': 0.5})
    """
    def rate(passed, total):
        return {"passed": passed, "total": total, "rate": passed / total if total else 0.0}

    turns = [t for d in results for t in d["turns"]]
    checks = [c for t in turns for c in t["checks"]]
    tags = sorted({a for d in results for a in d["about"]})
    return {"dialogues": rate(sum(d["passed"] for d in results), len(results)),
            "turns": rate(sum(t["passed"] for t in turns), len(turns)),
            "checks": rate(sum(c["ok"] for c in checks), len(checks)),
            "by_about": {a: rate(sum(d["passed"] for d in results if a in d["about"]),
                                 sum(a in d["about"] for d in results)) for a in tags}}


def run_suite(settings, path: Path, out: Path | None, fake_llm: bool = False, log=print,
              progress: bool = True, recommender=None) -> dict:
    """Run every dialogue of ``path``; write ``report.json`` and ``report.md`` to ``out``.

    The recommender is the configured one (retrieval, the LLM ranker, re-ranking), with
    template explanations: the suite checks picks, state and the reply's sentences, not
    the wording of explanations, which would only cost time. ``fake_llm``: rank with a
    backend that scores every candidate alike (retrieval order, then re-ranking).
    """
    from tqdm import tqdm

    from agent.rank.verbalizer import RANK_PROMPTS
    from eval.report import git_sha
    from prompts import prompt_hashes

    sha, t0 = git_sha(), time.perf_counter()
    settings = replace(settings, explain="template")
    if recommender is None:
        from agent.build import build_recommender
        from agent.data.catalog import Catalog

        load_suite(path, Catalog.load(settings.data_dir()))  # fail before the model loads
        backend = None
        if fake_llm:
            from agent.llm.fake import FakeBackend

            backend = FakeBackend()
        recommender = build_recommender(settings, backend=backend, log=log)
    catalog = recommender.catalog
    dialogues = load_suite(path, catalog)
    shares = quality_shares(catalog)
    t_build = time.perf_counter() - t0
    with tqdm(total=sum(len(d.turns) for d in dialogues), desc="dialogue suite", unit="turn",
              disable=not progress) as bar:
        results = [run_dialogue(recommender, d, catalog, shares, bar) for d in dialogues]
    seconds = [t["seconds"] for d in results for t in d["turns"] if "seconds" in t]
    report = {
        "suite": str(path), "suite_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "ranker": "fake (every candidate scored alike)" if fake_llm else
                  f"configured LLM: {settings.llm_url or settings.model}"
                  + (f" + adapter {settings.adapter}" if settings.adapter else ""),
        "config": settings.public(), "prompt_hashes": prompt_hashes(RANK_PROMPTS),
        "git_sha": sha, "summary": summarize(results),
        "timing_s": {"setup": t_build, "turns": sum(seconds),
                     "per_turn_mean": sum(seconds) / max(1, len(seconds)),
                     "per_turn_max": max(seconds, default=0.0),
                     "wall": time.perf_counter() - t0},
        "dialogues": results,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
        (out / "report.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    """The report for people: pass rates, then each failing turn with what the agent did."""
    s, tm = report["summary"], report["timing_s"]

    def pct(r):
        return f"{r['passed']}/{r['total']} ({r['rate']:.1%})"

    lines = ["# Dialogue suite", "",
             f"- dialogues fully passed: **{pct(s['dialogues'])}**",
             f"- turns passed: {pct(s['turns'])}; checks passed: {pct(s['checks'])}",
             f"- ranker: {report['ranker']}; commit {report['git_sha'] or 'unknown'}",
             f"- time: {tm['wall']:.0f} s ({tm['setup']:.0f} s setup, "
             f"{tm['per_turn_mean']:.2f} s per turn, slowest {tm['per_turn_max']:.2f} s)",
             f"- suite: {report['suite']} (sha256 {report['suite_sha256'][:12]})", "",
             "| tag | dialogues passed |", "|---|---|"]
    lines += [f"| {tag} | {pct(r)} |" for tag, r in s["by_about"].items()]
    lines += ["", "| dialogue | turns passed | result |", "|---|---|---|"]
    for d in report["dialogues"]:
        ok = sum(t["passed"] for t in d["turns"])
        verdict = "pass" if d["passed"] else "FAIL"
        lines.append(f"| {d['id']} | {ok}/{len(d['turns'])} | {verdict} |")
    failing = [d for d in report["dialogues"] if not d["passed"]]
    if failing:
        lines += ["", "## Failures"]
    for d in failing:
        lines += ["", f"### {d['id']}"]
        for t in d["turns"]:
            said = t["say"]
            if said is None:
                said = f"[{t['feedback'][0]} pick {t['feedback'][1]}]"
            lines.append(f"- turn {t['turn']} {'ok' if t['passed'] else '**fails**'}: {said}")
            if t["passed"]:
                continue
            for c in t["checks"]:
                if not c["ok"]:
                    expected = json.dumps(c["expected"], ensure_ascii=False)
                    lines.append(f"  - `{c['check']}: {expected}` — {c['detail']}")
            if t.get("reply"):
                lines.append("  - reply: " + " / ".join(t["reply"].splitlines()[:4]))
            if t.get("state"):
                lines.append(f"  - state: `{json.dumps(t['state'], ensure_ascii=False)}`")
    return "\n".join(lines) + "\n"
