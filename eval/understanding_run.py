"""Runs the request-understanding scorer (``eval.understanding``) through the agent:
the fit rule (``PickJudge``), one turn per request, and the report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from eval.understanding import (DEFAULT, HELDOUT, SLOTS, TARGET, WARM_UP, WELL_LIKED_MEAN,
                                WELL_LIKED_RATINGS, load_requests, picks_fit, readings,
                                score_case, state_slots, summarize)


@dataclass
class PickJudge:
    """Checks picks against an expectation (the fit rule in the module docstring)."""

    items: dict  # id -> Item
    head: set  # widely watched item ids
    well_liked: set  # ids rated WELL_LIKED_MEAN+ by WELL_LIKED_RATINGS+ users
    reference: object = None  # ReferenceFilms (agent.domain.movielens): outside titles' genres
    top_k: int = 3

    def __post_init__(self):
        self.ids: dict[str, list[int]] = {}  # a title -> every item with it ("Cape Fear")
        for it in self.items.values():
            self.ids.setdefault(it.title, []).append(it.id)

    def expected_state(self, want: dict):
        """The resolved expectation as the ``DialogueState`` the picks must satisfy."""
        from agent.types import DialogueState

        ids = self.ids
        like = [g for t in want["outside"] for g in self._genres_of(t)]
        return DialogueState(
            liked=tuple(i for t in want["liked"] for i in ids.get(t, ())),
            disliked=tuple(i for t in want["disliked"] for i in ids.get(t, ())),
            genres=tuple(want["genres"]), genre_or=want["genre_or"],
            excluded_genres=tuple(want["excluded_genres"]), year_min=want["year_min"],
            year_max=want["year_max"], people=tuple(want["people"]),
            moods=tuple(want["moods"]), like_genres=tuple(dict.fromkeys(like)))

    def _genres_of(self, title: str) -> tuple[str, ...]:
        film = self.reference.lookup(title) if self.reference is not None else None
        return film.genres if film is not None else ()

    def meets(self, item, state, want) -> bool:
        from agent.understand.state import satisfies

        return satisfies(item, state) and not self._flag_problems(item, want)

    def _flag_problems(self, item, want) -> list[str]:
        out = []
        if want["lesser_known"] and item.id in self.head:
            out.append("lesser_known")
        if want["popular"] and item.id not in self.head:
            out.append("popular")
        if want["well_liked"] and item.id not in self.well_liked:
            out.append("well_liked")
        return out

    def problems(self, item, state, want) -> list[str]:
        """What a pick breaks, one name per constraint (``satisfies`` on each alone)."""
        from agent.types import DialogueState
        from agent.understand.state import satisfies

        parts = {"liked/disliked": DialogueState(liked=state.liked, disliked=state.disliked),
                 "years": DialogueState(year_min=state.year_min, year_max=state.year_max),
                 "genres": DialogueState(genres=state.genres, genre_or=state.genre_or),
                 "excluded_genres": DialogueState(excluded_genres=state.excluded_genres),
                 "moods": DialogueState(moods=state.moods),
                 "outside genres": DialogueState(like_genres=state.like_genres),
                 "people": DialogueState(people=state.people)}
        return [k for k, s in parts.items() if not satisfies(item, s)] + \
            self._flag_problems(item, want)

    def judge(self, picks: list, want: dict) -> dict:
        """``n_fitting`` (catalog films meeting ``want``), ``fit`` and ``bad_picks``."""
        silent = want["vague"] or want["off_topic"]
        state = self.expected_state(want)
        n = 0 if silent else sum(self.meets(it, state, want) for it in self.items.values())
        bad = {it.label: (["asked back, no picks expected"] if silent else
                          self.problems(it, state, want)) for it in picks}
        bad = {k: v for k, v in bad.items() if v}
        ok = [it.label not in bad for it in picks]
        return {"n_fitting": n, "fit": picks_fit(ok, n, self.top_k, silent), "bad_picks": bad}


def well_liked_items(catalog) -> set[int]:
    """Ids rated ``WELL_LIKED_MEAN`` or more on average by ``WELL_LIKED_RATINGS``+ users."""
    import numpy as np

    if catalog.rating is None:
        return set(catalog.head)
    n = np.bincount(catalog.item)
    mean = np.bincount(catalog.item, weights=catalog.rating) / np.maximum(n, 1)
    return {int(i) for i in np.flatnonzero((n >= WELL_LIKED_RATINGS) & (mean >= WELL_LIKED_MEAN))}


def run_case(request: dict, rec, judge: PickJudge) -> dict:
    """Parse the request and run the turn, timing both, then score them."""
    from agent.types import DialogueState
    from agent.understand.state import merge

    t0 = time.perf_counter()
    parsed = rec.parse(request["text"])
    state = merge(DialogueState(), parsed, rec.catalog.items)
    parse_s = time.perf_counter() - t0
    got = state_slots(state, parsed, rec.catalog.items, rec.is_vague(state))
    t0 = time.perf_counter()
    reply = rec.turn(request["text"])
    turn_s = time.perf_counter() - t0
    case = score_case(request, got, [r.item for r in reply.recommendations], judge)
    return {**case, "reply": reply.text.splitlines()[0] if reply.text else "",
            "parse_s": parse_s, "turn_s": turn_s}


def failed_case(request: dict, error: str) -> dict:
    """A request whose parse or turn raised: it neither agrees nor fits."""
    want = readings(request)[0]
    return {"id": request["id"], "text": request["text"], "expect": request.get("expect", {}),
            "accept": request.get("accept", {}), "resolved": want, "got": dict(DEFAULT),
            "wrong": [s for s in SLOTS if want[s] != DEFAULT[s]], "agree": False, "fit": False,
            "picks": [], "bad_picks": {}, "n_fitting": None, "error": error}


def build_for_understanding(settings, log=print):
    """The recommender the requests run through, and the name of its parser. With
    ``state_llm`` off: the rules, and the fake backend (its scores are all equal, so
    picks come in retrieval order, re-ranked). Otherwise the configured model, which
    then extracts the state and ranks."""
    from agent.build import build_recommender
    from agent.llm.fake import FakeBackend

    settings = replace(settings, explain="template")
    if settings.state_llm == "off":
        return build_recommender(settings, backend=FakeBackend(), log=log), "rules"
    return build_recommender(settings, log=log), f"rules + LLM extractor ({settings.state_llm})"


def run_understanding(settings, path: Path = HELDOUT, out_dir: Path = Path("out/understanding"),
                      log=print, limit: int | None = None) -> dict:
    """Score every request of ``path`` (the first ``limit``); writes ``report.json`` and
    ``report.md`` to ``out_dir`` and returns the report."""
    from tqdm import tqdm

    started = time.perf_counter()
    requests = load_requests(path)[:limit]
    rec, parser = build_for_understanding(settings, log)
    judge = PickJudge(rec.catalog.items, set(rec.catalog.head), well_liked_items(rec.catalog),
                      rec.reference, rec.top_k)
    t0 = time.perf_counter()
    rec.turn(WARM_UP)  # loads the embedder and lazy tables, so times are per message
    warm_up_s = time.perf_counter() - t0
    cases = []
    for req in tqdm(requests, desc="understanding", unit="request"):
        try:
            cases.append(run_case(req, rec, judge))
        except Exception as e:  # the runner's edge: one broken request is reported, not fatal
            log(f"request {req['id']} failed: {type(e).__name__}: {e}")
            cases.append(failed_case(req, f"{type(e).__name__}: {e}"))
    report = {"file": str(path), "parser": parser, "target": TARGET, **summarize(cases),
              "warm_up_s": warm_up_s, "wall_time_s": time.perf_counter() - started,
              "settings": settings.public(), "cases": cases}
    write_report(report, Path(out_dir))
    return report


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x) -> str:
    return "-" if x is None else f"{1000 * x:.1f} ms"


def _nondefault(slots: dict) -> dict:
    return {k: v for k, v in slots.items() if v != DEFAULT.get(k)}


def report_markdown(report: dict) -> str:
    """The report as Markdown: headline shares, slots, times, failure kinds, failures."""
    t = report["time"]
    lines = [f"# Understanding: {Path(report['file']).name} ({report['n']} requests, "
             f"parser: {report['parser']})", "",
             "| agree | picks fit | agree and fit (target) | errors |", "|---|---|---|---|",
             f"| {_pct(report['agree'])} | {_pct(report['fit'])} | "
             f"{_pct(report['agree_and_fit'])} ({_pct(report['target'])}) | {report['errors']} |",
             "", f"Time per message: parse {_ms(t['parse_s']['mean'])} mean, "
             f"{_ms(t['parse_s']['p95'])} p95; whole turn {_ms(t['turn_s']['mean'])} mean, "
             f"{_ms(t['turn_s']['p95'])} p95 (warm-up turn {report['warm_up_s']:.1f} s).", "",
             "| slot | precision | recall | F1 | tp | fp | fn |", "|---|---|---|---|---|---|---|"]
    for slot, s in report["slots"].items():
        lines.append(f"| {slot} | {_pct(s['precision'])} | {_pct(s['recall'])} | "
                     f"{_pct(s['f1'])} | {s['tp']} | {s['fp']} | {s['fn']} |")
    by_id = {c["id"]: c for c in report["cases"]}
    lines += ["", "## Failure kinds", "", "| kind | count | example |", "|---|---|---|"]
    lines += [f"| {k['kind']} | {k['count']} | {k['example']}: {by_id[k['example']]['text'][:70]} |"
              for k in report["failure_kinds"]]
    lines += ["", "## Failures", ""]
    for c in report["cases"]:
        if c["agree"] and c["fit"]:
            continue
        lines += [f"- **{c['id']}** {c['text']}",
                  f"  - expected: `{json.dumps(_nondefault(c['resolved']), ensure_ascii=False)}`",
                  f"  - got: `{json.dumps(_nondefault(c['got']), ensure_ascii=False)}`"
                  + (f" (wrong: {', '.join(c['wrong'])})" if c["wrong"] else "")]
        if c.get("error"):
            lines.append(f"  - error: {c['error']}")
        elif not c["fit"]:
            lines.append(f"  - picks ({c['n_fitting']} catalog films fit): "
                         + ("; ".join(f"{p} ({', '.join(c['bad_picks'].get(p, [])) or 'ok'})"
                                      for p in c["picks"]) or "none"))
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (out_dir / "report.md").write_text(report_markdown(report), encoding="utf-8")
