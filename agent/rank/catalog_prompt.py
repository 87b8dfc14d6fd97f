"""The ranking prompt for an imported catalog, written from its schema.

The film prompt (``agent.rank.verbalizer``) speaks of decades and genres; here each
candidate line is the item's name and the values of the schema's fact facets (``A.
Barbour Nordic black canvas backpack | backpack | Barbour | black | canvas | 93 | co
2/3``), "Mostly" is the values most common among the liked items, and the constraints are
the state's facets, exclusions and bounds. Few-shot demonstrations come from the
catalog's own interactions (``catalog_demos``): the ranker is given the training
catalog in an evaluation, so no held-out item is ever shown.
"""

from __future__ import annotations

from typing import Sequence

from agent.types import DialogueState, Item
from prompts import load_prompt

CATALOG_PROMPTS = ("rank_catalog_system", "rank_catalog_user")
DEMOS = 2  # demonstrations, each with 4 candidates
DEMO_CANDIDATES = 4


def _number(x: float) -> str:
    return f"{x:g}" if abs(x) < 10 else f"{round(x)}"


def facet_cells(item: Item, schema, n_facets: int | None = None) -> list[str]:
    """The first value of each fact facet of ``item`` (numbers compact), in schema order."""
    cells = []
    for facet in schema.facts[:n_facets]:
        value = item.value(facet.field)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is None or value == "":
            cells.append("?")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            cells.append(_number(float(value)))
        else:
            cells.append(str(value))
    return cells


def catalog_line(label: str, item: Item, schema, cowatched: int, n_liked: int,
                 title_words: int = 6, n_facets: int | None = None) -> str:
    name = " ".join(item.title.split()[:title_words])
    line = " | ".join([f"{label}. {name}", *facet_cells(item, schema, n_facets)])
    return line + (f" | co {cowatched}/{n_liked}" if cowatched else "")


def common_values(items: Sequence[Item], schema, n: int = 3) -> str:
    """The ``n`` category and entity values most frequent among ``items``."""
    counts: dict[str, int] = {}
    for it in items:
        for facet in schema.facts:
            if facet.kind == "range":
                continue
            for v in it.values(facet.field):
                counts[str(v)] = counts.get(str(v), 0) + 1
    return ", ".join(sorted(counts, key=lambda v: -counts[v])[:n]) or "none"


def constraints(state: DialogueState) -> str:
    """``category jumper; no brand Nike; price 20-90``."""
    parts = [f"{f.replace('_', ' ')} {v}" for f, v in state.facets]
    parts += [f"no {f.replace('_', ' ')} {v}" for f, v in state.excluded_facets]
    for field, lo, hi in state.bounds:
        lo_s = _number(lo) if lo is not None else "..."
        hi_s = _number(hi) if hi is not None else "..."
        parts.append(f"{field.replace('_', ' ')} {lo_s}-{hi_s}")
    return "; ".join(parts) or "none"


def system_text(schema) -> str:
    fields = " | ".join(f.name for f in schema.facts)
    return load_prompt("rank_catalog_system").render(noun=schema.item_noun, fields=fields)


def user_text(liked: list[Item], disliked: list[Item], state_constraints: str, request: str,
              lines: Sequence[str], schema, title_words: int = 6) -> str:
    from agent.rank.verbalizer import context_lines

    def names(items):
        return "; ".join(" ".join(i.title.split()[:title_words]) for i in items) or "none"
    return load_prompt("rank_catalog_user").render(
        liked=names(liked[-3:]), common=common_values(liked, schema),
        context=context_lines(names(disliked), state_constraints, request),
        candidates="\n".join(lines))


def catalog_demos(catalog) -> list[tuple[list[int], list[int], int]]:
    """``DEMOS`` demonstrations from the catalog's interactions: the users with the
    longest histories; liked = three items before their last, candidates = the last
    item and the most popular items they never had, the answer placed at B, then C.
    Deterministic, and drawn from whatever interactions ``catalog`` holds."""
    from agent.data.stats import group_by_user

    seqs = group_by_user(catalog.user, catalog.item, catalog.timestamp)
    users = sorted(seqs, key=lambda u: (-len(set(seqs[u])), u))
    popular = sorted(catalog.items, key=lambda i: (-catalog.items[i].popularity, i))
    demos = []
    for k, user in enumerate(users[:DEMOS]):
        seq = list(dict.fromkeys(seqs[user]))
        if len(seq) < 2:
            break
        target, liked = seq[-1], seq[:-1][-3:]
        others = [i for i in popular if i not in seq][: DEMO_CANDIDATES - 1]
        answer = 1 + k % 2
        demos.append((liked, others[:answer] + [target] + others[answer:], answer))
    return demos


# Name words, facets shown and request words, from the fullest prompt to the tersest: the
# request and the facet values go last (what was asked for, and what the items are).
COMPACT = ((6, None, 30), (3, None, 12), (2, None, 8), (2, 3, 8))


def catalog_lines(cands: Sequence[int], co: Sequence[int], n_liked: int, catalog,
                  compact: int = 0) -> list[str]:
    from agent.rank.verbalizer import LABELS

    words, n_facets, _ = COMPACT[compact]
    return [catalog_line(LABELS[k], catalog.items[i], catalog.schema, co[k], n_liked, words,
                         n_facets) for k, i in enumerate(cands)]


def catalog_messages(state: DialogueState, lines: Sequence[str], catalog, few_shot: bool,
                     compact: int = 0, demos=None) -> list[dict]:
    """The ranking prompt over an imported catalog for candidate ``lines``
    (``catalog_lines``). ``compact`` (an index of ``COMPACT``): shorter names, fewer
    facets and request words, for a tight token budget. ``demos``: ``catalog_demos(catalog)``, when already drawn."""
    from agent.rank.verbalizer import LABELS

    schema, items = catalog.schema, catalog.items
    words, _, request_words = COMPACT[compact]
    messages = [{"role": "system", "content": system_text(schema)}]
    if few_shot:
        for liked, shown, answer in catalog_demos(catalog) if demos is None else demos:
            demo = catalog_lines(shown, [0] * len(shown), len(liked), catalog, compact)
            messages.append({"role": "user", "content": user_text(
                [items[i] for i in liked], [], "none", "", demo, schema, words)})
            messages.append({"role": "assistant", "content": LABELS[answer]})
    messages.append({"role": "user", "content": user_text(
        [items[i] for i in state.liked if i in items],
        [items[i] for i in state.disliked if i in items], constraints(state),
        " ".join(state.query.split()[:request_words]), lines, schema, words)})
    return messages
