"""Who should write explanations, measured: the rule-based writer or the LLM.

The same turns (seeded requests naming popular catalog titles, some with a genre or a
decade) are explained both ways. Per writer: how many texts pass the catalog check
(the LLM's drafts before any fallback; the writer's by construction), how many state
something tied to this user (a liked title, a shared or asked-for person, a requested
genre or year), how varied one reply's three texts are (no two with the same sentence
skeleton, no 4-gram repeated across them), their length and the time per turn.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import replace
from pathlib import Path

from agent.domain.movielens.film import credits
from agent.explain.check import check_explanation, whole_sentences
from agent.explain.facts import gather_facts
from agent.explain.writer import explain_picks, explanation_messages

SHAPES = ("I loved {a} and {b}", "something like {a}", "I liked {a}, something from the {decade}s",
          "I enjoyed {a}, any {genre} film", "{a} and {b} are favourites of mine")


def requests(catalog, n: int, seed: int = 0) -> list[str]:
    """``n`` seeded requests naming popular titles (the 300 most watched)."""
    rng = random.Random(seed)
    popular = sorted(catalog.items.values(), key=lambda it: (-it.popularity, it.id))[:300]
    out = []
    for _ in range(n):
        a, b = rng.sample(popular, 2)
        out.append(rng.choice(SHAPES).format(
            a=a.title, b=b.title, decade=rng.choice((1970, 1980, 1990)),
            genre=rng.choice(a.values("genres")).lower() if a.values("genres") else "drama"))
    return out


def skeleton(text: str, words) -> str:
    """``text`` with the given fact words and all numbers blanked: its sentence frame.

    >>> skeleton("Like Alien, it is horror (1979).", ["Alien", "horror"])
    'like _, it is _ (_).'
    """
    for w in sorted(set(words), key=len, reverse=True):
        text = re.sub(re.escape(w), "_", text, flags=re.I)
    return re.sub(r"\d+", "_", text).lower().strip()


def grams(text: str, n: int = 4) -> set:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def personal(text: str, f, state, items) -> bool:
    """Whether ``text`` states a fact tied to this user: a liked title, a person shared
    with one or asked for, a requested genre or a year in the requested range."""
    said = text.lower()
    names = [items[i].title for i in state.liked if i in items]
    names += [p for p, _, _ in f.shared_people] + [p for p, _ in f.meets_people]
    names += list(f.meets_genre)
    if f.meets_years and f.item.value("year"):
        names.append(str(f.item.value("year")))
    return any(n.lower() in said for n in names)


def varied(texts, facts) -> bool:
    """No two texts of one reply share a skeleton or a 4-gram."""
    words = [w for f in facts for w in (f.item.title, *f.item.values("genres"),
                                        *credits(f.item))]
    shapes = [skeleton(t, words) for t in texts]
    pairs = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1:]]
    return len(set(shapes)) == len(shapes) and not any(grams(a) & grams(b) for a, b in pairs)


def score_writer(turns, items) -> dict:
    """Summary over ``[(texts, facts, state, passed, seconds)]``."""
    texts = [(t, f, s, p) for texts, facts, s, passed, _ in turns
             for t, f, p in zip(texts, facts, passed)]
    n = len(texts) or 1
    return {"turns": len(turns), "explanations": len(texts),
            "check_pass_rate": sum(p for *_, p in texts) / n,
            "personal_rate": sum(personal(t, f, s, items) for t, f, s, _ in texts) / n,
            "varied_reply_rate": sum(varied(ts, fs) for ts, fs, *_ in turns) / (len(turns) or 1),
            "mean_words": sum(len(t.split()) for t, *_ in texts) / n,
            "seconds_per_turn": sum(sec for *_, sec in turns) / (len(turns) or 1)}


def run_explanations(settings, n_turns: int, out: Path, log=print, seed: int = 0) -> dict:
    """Explain ``n_turns`` turns with both writers; writes explanations.json/.md."""
    from tqdm import tqdm

    from agent.build import build_recommender, make_backend
    from agent.llm.fake import FakeBackend

    # The picks come from retrieval order (a fake ranker): what is measured is the writing.
    rec = build_recommender(replace(settings, explain="template"), backend=FakeBackend(),
                            log=log)
    model = make_backend(settings)
    rule, llm = [], []
    for text in tqdm(requests(rec.catalog, n_turns, seed), desc="explanations", unit="turn"):
        reply = rec.turn(text)
        if not reply.recommendations:
            continue
        state = reply.state
        facts = [gather_facts(r.item, state, rec.catalog.items, rec.catalog.cowatch)
                 for r in reply.recommendations]
        t = time.perf_counter()
        written = explain_picks(facts)
        rule.append((written, facts, state, [True] * len(facts), time.perf_counter() - t))
        t = time.perf_counter()
        drafts = [whole_sentences(d) for d in model.generate(
            [explanation_messages(f) for f in facts], rec.max_explain_tokens)]
        seconds = time.perf_counter() - t
        passed = [not check_explanation(d, f, state, rec.catalog.items, rec.title_index,
                                        rec.known_people) for d, f in zip(drafts, facts)]
        llm.append((drafts, facts, state, passed, seconds))
    report = {"model": settings.model, "requests_seed": seed,
              "rules": score_writer(rule, rec.catalog.items),
              "llm": score_writer(llm, rec.catalog.items),
              "examples": [{"request_state": s.to_json()["liked"], "rules": r, "llm": d}
                           for (r, _, s, _, _), (d, *_) in list(zip(rule, llm))[:10]]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "explanations.json").write_text(json.dumps(report, indent=2))
    (out / "explanations.md").write_text(render(report))
    return report


def render(report: dict) -> str:
    keys = ("check_pass_rate", "personal_rate", "varied_reply_rate", "mean_words",
            "seconds_per_turn")
    rows = ["| | rule-based writer | LLM (drafts, before fallback) |", "|---|---|---|"]
    for k in keys:
        rows.append(f"| {k.replace('_', ' ')} | {report['rules'][k]:.3f} | "
                    f"{report['llm'][k]:.3f} |")
    return (f"# Explanations: {report['rules']['turns']} turns, "
            f"{report['rules']['explanations']} texts each\n\nModel: {report['model']}\n\n"
            + "\n".join(rows) + "\n")
