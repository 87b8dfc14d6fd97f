"""Conversational evaluation without an LLM judge: a simulated user.

The simulated user holds a held-out target movie. Each turn it reveals one
attribute of the target (genre, decade, a similar movie it liked, director,
a cast member) and reacts to what it was shown: "Not X." for a miss. It talks
to the agent only through ``Recommender.turn``, like any client. Success at a
turn means the target is among that turn's recommendations (10 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.types import DialogueState, Item
from eval.protocols import Case

MAX_TURNS = 5
GENRE_SAYING = {"Sci-Fi": "sci-fi", "Children's": "children's", "Film-Noir": "film noir"}


@dataclass(frozen=True)
class Dialogue:
    user: int
    target: int
    messages: tuple[str, ...]
    success_turn: int | None  # 1-based; None if never within MAX_TURNS


def similar_liked(case: Case, target: Item, catalog) -> Item | None:
    """The history item most like the target (genre overlap, then co-watching in
    training data): what this user would name as "a movie I liked like that"."""
    best, best_score = None, 0.0
    for i in case.history[-50:]:
        it = catalog.get(i)
        mine, theirs = set(it.values("genres")), set(target.values("genres"))
        score = len(mine & theirs) / len(mine | theirs) if mine | theirs else 0.0
        score += float(catalog.cowatch[i, target.id]) if target.id < catalog.cowatch.shape[1] else 0
        if score > best_score:
            best, best_score = it, score
    return best


def attribute_messages(case: Case, catalog) -> list[str]:
    """What the simulated user reveals, one attribute per turn, in this order."""
    target = catalog.get(case.target)
    out = []
    if target.values("genres"):
        word = GENRE_SAYING.get(target.values("genres")[0], target.values("genres")[0].lower())
        out.append(f"I'm in the mood for {'an' if word[0] in 'aeiou' else 'a'} {word} movie.")
    if target.value("year"):
        out.append(f"Something from the {target.value('year') // 10 * 10}s.")
    liked = similar_liked(case, target, catalog)
    if liked is not None:
        out.append(f"I really liked {liked.title}.")
    if target.values("director"):
        out.append(f"Maybe something directed by {target.values('director')[0]}.")
    if target.values("cast"):
        out.append(f"Ideally with {target.values('cast')[0]} in it.")
    return out[:MAX_TURNS]


def simulate(recommender, case: Case, catalog) -> Dialogue:
    """Drive ``recommender`` for up to ``MAX_TURNS`` turns towards ``case.target``."""
    state: DialogueState | None = None
    said, reaction = [], ""
    for turn, attribute in enumerate(attribute_messages(case, catalog), start=1):
        message = f"{reaction} {attribute}".strip()
        said.append(message)
        reply = recommender.turn(message, state)
        state = reply.state
        shown = [r.item.id for r in reply.recommendations]
        if case.target in shown:
            return Dialogue(case.user, case.target, tuple(said), turn)
        reaction = f"Not {catalog.get(shown[0]).title}." if shown else ""
    return Dialogue(case.user, case.target, tuple(said), None)


def summarize(dialogues: list[Dialogue]) -> dict:
    """success@10 within MAX_TURNS, cumulative success by turn, mean turns to success."""
    n = len(dialogues)
    turns = [d.success_turn for d in dialogues]
    by_turn = [sum(1 for t in turns if t is not None and t <= k) / n if n else 0.0
               for k in range(1, MAX_TURNS + 1)]
    hit = [t for t in turns if t is not None]
    return {"success@10": by_turn[-1] if by_turn else 0.0, "success@10_by_turn": by_turn,
            "mean_turns_to_success": float(np.mean(hit)) if hit else None, "dialogues": n,
            "examples": [{"target": d.target, "messages": list(d.messages),
                          "success_turn": d.success_turn} for d in dialogues[:3]]}
