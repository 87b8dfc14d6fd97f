"""Fine-tuning examples from interactions, on the evaluation's split and the agent's prompts.

Per user (leave-one-out by time, ``eval.protocols``): the last item is the test
target, the second-last the validation target; neither is ever trained on.
Training examples come from several cut points inside the training history.

Honest candidates: an example is kept only when the target really is among
the retriever's top ``n`` for that history; nothing is inserted, so the
target is not an odd one out that position or popularity could give away.
And no leak through the statistics: each round of cut points ("snapshot")
rebuilds popularity and co-watch from every user's history *before* their
cut, as the evaluation rebuilds them without the held-out items. So a
target never raises its own co-watch evidence.

The prompt is the agent's own (``VerbalizerRanker.messages``, zero-shot), so
an adapter trained here reads exactly what it will read in a dialogue. A
share of examples is "chat" shaped: fewer liked titles plus a stated genre or
decade of the target, with the retriever filtering on it, as in a dialogue.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import numpy as np

from agent.data.catalog import Catalog
from agent.rank.verbalizer import VerbalizerRanker, decade
from agent.types import DialogueState
from eval.protocols import Case, Split, catalog_from_histories, leave_one_out
from eval.systems import case_state

MIN_HISTORY = 3  # a cut point leaves at least this many items before the target


@dataclass(frozen=True)
class Example:
    """One ranking prompt with a known answer."""

    user: int
    kind: str  # "history" (recent items as likes) or "chat" (likes plus a stated constraint)
    candidates: tuple[int, ...]  # retriever order
    retrieval: tuple[float, ...]  # retriever scores, same order
    popularity: tuple[int, ...]  # training-interaction counts, same order
    answer: int  # position of the target in ``candidates``
    messages: tuple[dict, ...]

    @property
    def target(self) -> int:
        return self.candidates[self.answer]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Example:
        return cls(d["user"], d["kind"], tuple(d["candidates"]), tuple(d["retrieval"]),
                   tuple(d["popularity"]), d["answer"], tuple(d["messages"]))


RetrieverFor = Callable[[Catalog], object]  # catalog -> something with .retrieve(state, n)


def snapshot_cuts(train: dict[int, list[int]], snapshots: int, seed: int) -> list[dict[int, int]]:
    """For each snapshot, one cut point per user, uniform over the later half of the
    user's training history (later cuts keep the snapshot's statistics close to
    the evaluation's, which use the whole history)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(snapshots):
        cuts = {}
        for u, items in train.items():
            lo = max(MIN_HISTORY, len(items) // 2)
            if lo < len(items):
                cuts[u] = int(rng.integers(lo, len(items)))
        out.append(cuts)
    return out


def chat_state(history: list[int], target_item, rng, schema=None) -> DialogueState:
    """A dialogue-shaped state: one to three recent likes and one stated fact of the
    target (a genre or its decade; on an imported catalog, ``schema``'s, the value of
    one of its requestable categories), phrased as the user would."""
    liked = tuple(history[-int(rng.integers(1, 4)):])
    if schema is not None and not any(f.role for f in schema.facets):
        return _facet_state(liked, target_item, rng, schema)
    if target_item.values("genres") and (target_item.value("year") is None or rng.random() < 0.5):
        genre = str(rng.choice(target_item.values("genres")))
        return DialogueState(liked=liked, genres=(genre,), query=f"a {genre.lower()} movie")
    d = target_item.value("year") // 10 * 10
    return DialogueState(liked=liked, year_min=d, year_max=d + 9,
                         query=f"something from the {decade(target_item.value('year'))}")


def _facet_state(liked: tuple[int, ...], target_item, rng, schema) -> DialogueState:
    said = []
    for f in schema.requestable:
        v = target_item.value(f.field)
        values = list(v) if isinstance(v, (list, tuple)) else [] if v in (None, "") else [v]
        said += [(f.field, str(x)) for x in values if f.kind != "range"]
    if not said:
        return DialogueState(liked=liked, query="something like these")
    field, value = said[int(rng.integers(len(said)))]
    return DialogueState(liked=liked, facets=((field, value),), query=f"a {value}, please")


def make_example(user: int, kind: str, state: DialogueState, target: int, retriever,
                 ranker: VerbalizerRanker, n: int) -> Example | None:
    """The example for ``state``, or None when the retriever's top ``n`` misses ``target``."""
    cands = retriever.retrieve(state, n)
    ids = [c.item_id for c in cands]
    if target not in ids:
        return None
    cat = ranker.catalog
    return Example(user, kind, tuple(ids), tuple(c.score for c in cands),
                   tuple(cat.get(i).popularity for i in ids), ids.index(target),
                   tuple(ranker.messages(state, cands)))


def training_examples(catalog: Catalog, retriever_for: RetrieverFor, n: int, snapshots: int,
                      chat_share: float, seed: int, users: Iterable[int] | None = None,
                      progress: bool = True, count_tokens=None) -> list[Example]:
    """Examples from cut points inside each user's training history (see module doc).
    ``count_tokens(messages)``: the base model's prompt length, so prompts keep to the
    agent's token budget exactly as they will when it serves (None: an estimate)."""
    from tqdm import tqdm

    train, _, _ = leave_one_out(catalog, MIN_HISTORY)
    rng = np.random.default_rng(seed + 1)
    keep = set(train) if users is None else set(users) & set(train)
    out = []
    for s, cuts in enumerate(snapshot_cuts(train, snapshots, seed)):
        before = {u: train[u][: cuts.get(u, len(train[u]))] for u in train}
        cat = catalog_from_histories(catalog, before, f"fine-tuning snapshot {s}")
        retriever = retriever_for(cat)
        ranker = VerbalizerRanker(None, cat, n_llm=n, few_shot=False, count_tokens=count_tokens)
        for u in tqdm(sorted(set(cuts) & keep), desc=f"snapshot {s + 1}/{snapshots}",
                      unit="user", disable=not progress, leave=False):
            history, target = before[u], train[u][cuts[u]]
            if rng.random() < chat_share:
                kind, state = "chat", chat_state(history, cat.get(target), rng,
                                                 getattr(cat, "schema", None))
                state = state.with_changes(shown=tuple(i for i in history if i not in state.liked))
            else:
                kind, state = "history", case_state(Case(u, tuple(history), target))
            ex = make_example(u, kind, state, target, retriever, ranker, n)
            if ex is not None:
                out.append(ex)
    return out


def heldout_examples(split: Split, cases: list[Case], retriever, n: int,
                     count_tokens=None) -> list[Example]:
    """Validation or test examples: the evaluation's cases, kept where the retriever
    (over the training catalog) has the target in its top ``n`` (the honest subset)."""
    ranker = VerbalizerRanker(None, split.train_catalog, n_llm=n, few_shot=False,
                              count_tokens=count_tokens)
    out = []
    for case in cases:
        ex = make_example(case.user, "history", case_state(case), case.target, retriever, ranker, n)
        if ex is not None:
            out.append(ex)
    return out


def assert_no_heldout_leak(examples: Iterable[Example], valid: dict[int, int],
                           test: dict[int, int]) -> None:
    """Raise if a training example's target is a user's validation or test item."""
    for ex in examples:
        if ex.target in (valid.get(ex.user), test.get(ex.user)):
            raise AssertionError(f"user {ex.user}: held-out item {ex.target} is a training target")


# Trivial heuristics: scored like any ranker, they must not beat chance on honest data.

def position_ndcg(position: int, k: int = 10) -> float:
    """NDCG@k of a list with the one relevant item at 0-based ``position``."""
    return float(1.0 / np.log2(position + 2)) if position < k else 0.0


def chance_ndcg(n: int, k: int = 10) -> float:
    """Expected NDCG@k when the answer is at a uniformly random one of ``n`` positions.

    >>> round(chance_ndcg(2, 10), 4)
    0.8155
    """
    return float(np.mean([position_ndcg(p, k) for p in range(n)]))


def heuristic_ndcg(examples: list[Example], heuristic: str, k: int = 10) -> float:
    """Mean NDCG@k of ``retriever``, ``reverse`` (retriever order reversed) or
    ``least_popular`` (ascending training popularity) over ``examples``."""
    scores = []
    for ex in examples:
        n = len(ex.candidates)
        if heuristic == "retriever":
            order = list(range(n))
        elif heuristic == "reverse":
            order = list(range(n))[::-1]
        elif heuristic == "least_popular":
            order = sorted(range(n), key=lambda j: (ex.popularity[j], j))
        else:
            raise ValueError(f"unknown heuristic {heuristic!r}")
        scores.append(position_ndcg(order.index(ex.answer), k))
    return float(np.mean(scores)) if scores else 0.0


def mean_chance(examples: list[Example], k: int = 10) -> float:
    return float(np.mean([chance_ndcg(len(ex.candidates), k) for ex in examples])) if examples else 0.0


def examples_hash(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.to_json(), sort_keys=True).encode())
    return h.hexdigest()


def save_examples(path, examples: list[Example]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_json()) + "\n")


def load_examples(path) -> list[Example]:
    with open(path, encoding="utf-8") as f:
        return [Example.from_json(json.loads(line)) for line in f]


def with_feedback(catalog: Catalog, feedback: list[dict]) -> Catalog:
    """``catalog`` plus each stored session's likes as one more user (in the order they
    were given), so fine-tuning learns from what Tailor's own users liked. Sessions get
    user ids above the dataset's; dislikes are not interactions and are left out."""
    likes: dict[str, list[int]] = {}
    for f in sorted(feedback, key=lambda f: f["at"]):
        if f["value"] == "like" and f["item_id"] in catalog.items:
            likes.setdefault(f["session_id"], [])
            if f["item_id"] not in likes[f["session_id"]]:
                likes[f["session_id"]].append(f["item_id"])
    if not likes:
        return catalog
    first = int(catalog.user.max()) + 1 if len(catalog.user) else 0
    users, items, times = [], [], []
    for k, session in enumerate(sorted(likes)):
        for t, item in enumerate(likes[session]):
            users.append(first + k), items.append(item), times.append(t)
    return Catalog(list(catalog.items.values()), dict(catalog.meta, feedback_sessions=len(likes)),
                   np.concatenate([catalog.user, np.array(users, dtype=catalog.user.dtype)]),
                   np.concatenate([catalog.item, np.array(items, dtype=catalog.item.dtype)]),
                   np.concatenate([catalog.timestamp, np.array(times, dtype=catalog.timestamp.dtype)]),
                   catalog.head)
