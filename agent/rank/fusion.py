"""The learned fusion: a LightGBM LambdaRank model over every candidate source's lists.

The first stage (``HybridRetriever.lists``) proposes items from several sources, each
a ranked ``[(item_id, score)]`` list. The union of those lists is the candidate set;
each candidate gets a row of features (``feature_names``): every source's rank and raw
score (missing where that source did not propose it), the hand-tuned RRF score, the
number of sources that proposed it, its popularity, tail flag, rating quality and
year, the length of the evidence, whole-catalog models' opinions of every candidate
(``MODEL_FEATURES``: the sequence model's log-probability, its distance from the
model's best and its z-score, which compare across users where a raw logit does not;
EASE's score), and optionally the LLM verbalizer's score. A
LambdaRank model (RecTools' CandidateRankingModel shape: the first stage's ranks and
scores kept as features) orders them.

Training examples must be leak-free: the sources are fitted on interactions from
before each example's target, and the target is the next thing the user watched
(``agent.rank.shadow``). The model is saved with its feature list and training config.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from agent.errors import ConfigError

# Sources, in the order their features appear. "avoid" (items like the disliked ones)
# is a source the model may learn to count against an item.
SOURCES = ("sequential", "cowatch", "semantic", "content", "popular", "quality", "avoid",
           "transition")
# The candidate's share of what everyone watched in the 7, 30 and 180 days before the
# user's last title (a chat: before the catalog's last interaction), ``Catalog.recent``.
RECENT_DAYS = (7, 30, 180)
RECENT_FEATURES = tuple(f"recent_{d}d" for d in RECENT_DAYS)
ITEM_FEATURES = ("rrf", "n_sources", "log_popularity", "tail", "quality_prior", "year",
                 "history_len") + RECENT_FEATURES
# What models that score the whole catalog say of each candidate, proposed or not, and
# how its popularity compares with the history's (``HybridRetriever.model_scores``);
# missing when the model is absent. All read the whole history: the twin for short
# evidence goes without them (``SHORT_EVIDENCE``).
MODEL_FEATURES = ("sequential_logp", "sequential_gap", "sequential_z", "ease", "ease_last1",
                  "ease_last5", "ease_last20", "popularity_vs_history", "history_popularity")
LLM_FEATURE = "llm"
MODEL, META = "fusion.txt", "fusion.json"


def feature_names(llm: bool = False) -> list[str]:
    """Column names of a candidate row.

    >>> feature_names()[:4]
    ['sequential_rank', 'sequential_score', 'cowatch_rank', 'cowatch_score']
    >>> feature_names(llm=True)[-2:]
    ['history_popularity', 'llm']
    """
    cols = [f"{s}_{kind}" for s in SOURCES for kind in ("rank", "score")]
    return cols + list(ITEM_FEATURES) + list(MODEL_FEATURES) + ([LLM_FEATURE] if llm else [])


@dataclass(frozen=True)
class FusionConfig:
    rounds: int = 400  # boosting rounds at most; early stopping on held-out users ends it
    learning_rate: float = 0.05
    # Trees of 31 leaves, each of 200 rows or more, and 100 rounds of patience: on the
    # cached ML-1M cases 0.1997 NDCG@10 against 0.1983 with 7 leaves of 100 rows and 40
    # rounds, on ML-100K's the same (0.1126 and 0.1125; README, "Two stages", run L)
    num_leaves: int = 31
    min_data_in_leaf: int = 200
    bag: int = 5  # boosters averaged, each early-stopped on other held-out users
    feature_fraction: float = 0.9
    early_stopping: int = 100
    valid_share: float = 0.2  # groups kept aside for early stopping
    seed: int = 0


def candidate_rows(lists: dict[str, list[tuple[int, float]]], catalog, history_len: int,
                   rrf: dict[int, float] | None = None, llm: dict[int, float] | None = None,
                   models: Callable[[list[int]], dict[str, np.ndarray]] | None = None,
                   when: int | None = None) -> tuple[list[int], np.ndarray]:
    """The union of ``lists`` (``avoid`` alone proposes nothing) and its feature rows.

    A source that did not propose an item gives it NaN for both its rank and its score:
    LightGBM learns where missing values go, so "not proposed" is its own branch.
    ``models(ids)``: the ``MODEL_FEATURES`` columns of those ids, by name (a name left
    out stays NaN; ``HybridRetriever.model_scores``). ``when``: the moment the recent
    popularity is counted at (None: after the catalog's last interaction).
    """
    ids: list[int] = []
    for source, ranked in lists.items():
        if source != "avoid":
            ids += [i for i, _ in ranked]
    ids = list(dict.fromkeys(ids))
    pos = {i: r for r, i in enumerate(ids)}
    use_llm = llm is not None
    X = np.full((len(ids), len(feature_names(use_llm))), np.nan, dtype=np.float32)
    for s, source in enumerate(SOURCES):
        for rank, (item, score) in enumerate(lists.get(source, ())):
            row = pos.get(item)
            if row is not None:
                X[row, 2 * s], X[row, 2 * s + 1] = rank, score
    base = 2 * len(SOURCES)
    quality = catalog.quality
    plain = len(ITEM_FEATURES) - len(RECENT_FEATURES)
    year_of = catalog.schema.roles.year_of  # a film catalog's year, whatever its column
    for row, item in enumerate(ids):
        it = catalog.get(item)
        X[row, base:base + plain] = (
            (rrf or {}).get(item, np.nan),
            sum(1 for s in lists if s != "avoid" and not math.isnan(X[row, 2 * SOURCES.index(s)])),
            math.log1p(it.popularity), float(catalog.is_tail(item)), quality.get(item, np.nan),
            year_of(it) or np.nan, history_len)
        if use_llm:
            X[row, -1] = llm.get(item, np.nan)
    if ids:
        X[:, base + plain:base + len(ITEM_FEATURES)] = catalog.recent.shares(ids, when,
                                                                             RECENT_DAYS)
    if models is not None and ids:
        first = base + len(ITEM_FEATURES)
        for name, values in models(ids).items():
            X[:, first + MODEL_FEATURES.index(name)] = values
    return ids, X


def popularity_columns(catalog, history: Sequence[int], ids: Sequence[int]
                       ) -> dict[str, np.ndarray]:
    """How mainstream the history is (the mean log popularity of its items the catalog
    knows, ``history_popularity``) and each candidate's log popularity against it
    (``popularity_vs_history``): a user of cult films and one of blockbusters want
    other items of the same list.

    >>> cat = type("C", (), {"items": {1: type("I", (), {"popularity": 0})(),
    ...                                2: type("I", (), {"popularity": 9})()}})()
    >>> cols = popularity_columns(cat, [1, 1, 5], [2])
    >>> round(float(cols["popularity_vs_history"][0]), 3), float(cols["history_popularity"][0])
    (2.303, 0.0)
    """
    known = [catalog.items[i] for i in history if i in catalog.items]
    if not known:
        return {}
    mean = float(np.mean([math.log1p(it.popularity) for it in known]))
    own = np.array([math.log1p(catalog.items[i].popularity) if i in catalog.items else np.nan
                    for i in ids])
    return {"popularity_vs_history": own - mean, "history_popularity": np.full(len(own), mean)}


@dataclass
class Example:
    """One user's candidates: their rows and which one was the item watched next."""

    ids: list[int]
    X: np.ndarray
    target: int
    user: int | None = None  # whose case it is: early stopping holds out whole users

    @property
    def labels(self) -> np.ndarray:
        return np.array([1.0 if i == self.target else 0.0 for i in self.ids])


def known_user_example(retriever, history: Sequence[int], target: int, catalog,
                       pool: int = 50, when: int | None = None) -> tuple[Example, dict]:
    """The candidates the agent proposes for a user known by ``history`` (time order),
    as a fusion example whose answer is ``target``; also the source lists.

    Leak-free only if ``retriever`` and ``catalog`` were fitted on interactions from
    before ``target`` (see ``shadow_examples``) and ``when`` (the recent popularity's
    moment) is no later than the history's last title."""
    from agent.understand.state import known_user_state

    state = known_user_state(history)
    lists = retriever.lists(state, pool, history=history)
    rrf = {c.item_id: c.score for c in retriever.rrf(state, lists, 10 * pool)}
    ids, X = candidate_rows(lists, catalog, len(history), rrf,
                            models=lambda ids: retriever.model_scores(state, ids, history),
                            when=when)
    return Example(ids, X, target), lists


SHORT_EVIDENCE = 5  # fewer titles to go on than this: the fusion without MODEL_FEATURES
SHORT = "short"  # its folder inside the fusion's


def blank_models(e: Example, features: Sequence[str]) -> Example:
    """``e`` with its ``MODEL_FEATURES`` columns missing."""
    X = e.X.copy()
    X[:, [list(features).index(f) for f in MODEL_FEATURES if f in features]] = np.nan
    return Example(e.ids, X, e.target, e.user)


class FusionRanker:
    """Trained LambdaRank boosters (their scores averaged) and the feature list.

    ``short``: the same fusion trained with its ``MODEL_FEATURES`` blanked, for a turn
    with fewer than ``SHORT_EVIDENCE`` titles to go on (``for_evidence``). The fusion
    learns from users with long histories; from one or two liked titles SASRec's and
    EASE's opinions are weak where the fusion learned to trust them, and simulated chats
    found fewer targets with them (README, "Two stages", run K)."""

    def __init__(self, boosters, features: list[str], info: dict | None = None,
                 short: FusionRanker | None = None, blanks_models: bool = False):
        self.boosters = list(boosters) if isinstance(boosters, (list, tuple)) else [boosters]
        self.features, self.info = list(features), info or {}
        self.short, self.blanks_models = short, blanks_models

    def for_evidence(self, titles: int) -> FusionRanker:
        """The fusion for a turn with ``titles`` titles to go on (liked or a known user's
        history): ``short`` below ``SHORT_EVIDENCE``, when there is one."""
        return self.short if self.short is not None and titles < SHORT_EVIDENCE else self

    @property
    def uses_llm(self) -> bool:
        return LLM_FEATURE in self.features

    def score(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != len(self.features):
            raise ConfigError(f"the fusion model reads {len(self.features)} features, "
                              f"not {X.shape[1]}: retrain it (`tailor train-cf`)")
        if not len(X):
            return np.zeros(0)
        return np.mean([b.predict(X, num_threads=1) for b in self.boosters], axis=0)

    def rank(self, ids: list[int], X: np.ndarray) -> list[tuple[int, float]]:
        """``ids`` best first, with their fused scores."""
        s = self.score(X)
        order = sorted(range(len(ids)), key=lambda r: (-s[r], ids[r]))
        return [(ids[r], float(s[r])) for r in order]

    def importances(self) -> dict[str, float]:
        """Total gain per feature, as shares summing to 1 (0 for an unused feature),
        averaged over the boosters."""
        shares = []
        for b in self.boosters:
            gain = b.feature_importance(importance_type="gain")
            shares.append(gain / (float(gain.sum()) or 1.0))
        mean = np.mean(shares, axis=0)
        return {f: float(g) / (float(mean.sum()) or 1.0) for f, g in zip(self.features, mean)}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for k, b in enumerate(self.boosters):
            b.save_model(str(folder / MODEL.replace(".txt", f"-{k}.txt")))
        if self.short is not None:
            self.short.save(folder / SHORT)
        (folder / META).write_text(json.dumps(
            {"features": self.features, "models": len(self.boosters), "info": self.info,
             "importances": self.importances(), "blanks_models": self.blanks_models},
            indent=2))

    @classmethod
    def load(cls, folder: Path) -> FusionRanker:
        import lightgbm as lgb

        meta = json.loads((folder / META).read_text())
        files = ([MODEL.replace(".txt", f"-{k}.txt") for k in range(meta["models"])]
                 if "models" in meta else [MODEL])
        short = cls.load(folder / SHORT) if (folder / SHORT / META).is_file() else None
        return cls([lgb.Booster(model_file=str(folder / f)) for f in files], meta["features"],
                   meta["info"], short, bool(meta.get("blanks_models")))


def _held_out(usable: list[Example], share: float, rng) -> tuple[list[Example], list[Example]]:
    """``(train, valid)``: a ``share`` of the users (of the cases, when users are not
    known) held out for early stopping, so a user's other cases cannot vouch for it."""
    users = sorted({e.user for e in usable if e.user is not None})
    if len(users) >= 10 and all(e.user is not None for e in usable):
        held = set(rng.permutation(users)[:max(1, int(len(users) * share))].tolist())
        return ([e for e in usable if e.user not in held], [e for e in usable if e.user in held])
    order = rng.permutation(len(usable))
    n_valid = max(1, int(len(usable) * share))
    return [usable[i] for i in order[n_valid:]], [usable[i] for i in order[:n_valid]]


def train_fusion(examples: Sequence[Example], features: list[str],
                 cfg: FusionConfig | None = None, log=print) -> FusionRanker:
    """LambdaRank on the examples whose target is among their candidates (the others
    carry no ranking signal): ``cfg.bag`` boosters, each early-stopped on NDCG@10 of
    another held-out share of the users, their scores averaged (bagging evens out how
    much one held-out draw moves a boosted model)."""
    import lightgbm as lgb

    cfg = cfg or FusionConfig()
    usable = [e for e in examples if e.target in e.ids and len(e.ids) > 1]
    if len(usable) < 10:
        raise ConfigError(f"only {len(usable)} training users have their next item among the "
                          "candidates: too few to learn a fusion")
    t0, boosters, rounds, bests = time.perf_counter(), [], [], []
    for k in range(max(1, cfg.bag)):
        seed = cfg.seed + k
        train, valid = _held_out(usable, cfg.valid_share, np.random.default_rng(seed))
        sets = {}
        # Train first: the held-out set is binned with the training set's bins.
        for name, part in (("train", train), ("valid", valid)):
            sets[name] = lgb.Dataset(np.vstack([e.X for e in part]),
                                     np.concatenate([e.labels for e in part]),
                                     group=[len(e.ids) for e in part], feature_name=features,
                                     free_raw_data=False, reference=sets.get("train"))
        params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10],
                  "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
                  "min_data_in_leaf": cfg.min_data_in_leaf,
                  "feature_fraction": cfg.feature_fraction, "bagging_seed": seed,
                  "feature_fraction_seed": seed, "seed": seed, "deterministic": True,
                  "num_threads": 1, "verbose": -1}
        booster = lgb.train(params, sets["train"], cfg.rounds, valid_sets=[sets["valid"]],
                            valid_names=["valid"],
                            callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)])
        boosters.append(booster)
        rounds.append(booster.best_iteration)
        bests.append(float(booster.best_score["valid"]["ndcg@10"])
                     if booster.best_score else float("nan"))
    best = float(np.mean(bests))
    info = {"config": asdict(cfg), "train_cases": len(train), "valid_cases": len(valid),
            "cases_without_target": len(examples) - len(usable),
            "rows": int(sum(len(e.ids) for e in usable)), "best_rounds": rounds,
            "valid_ndcg@10_within_candidates": best, "train_s": time.perf_counter() - t0}
    log(f"fusion: {len(usable)} of {len(examples)} cases have their next item among the "
        f"candidates; {len(boosters)} boosters, best rounds {rounds}, held-out NDCG@10 "
        f"within the candidates {best:.4f} ({info['train_s']:.1f}s)")
    return FusionRanker(boosters, features, info)


def train_fusion_pair(examples: Sequence[Example], features: list[str],
                      cfg: FusionConfig | None = None, log=print) -> FusionRanker:
    """``train_fusion`` on ``examples``, with its ``short`` twin trained on the same
    examples with the ``MODEL_FEATURES`` blanked."""
    fusion = train_fusion(examples, features, cfg, log)
    log("fusion: its twin for turns with few titles, without the whole-catalog columns")
    short = train_fusion([blank_models(e, features) for e in examples], features, cfg, log)
    fusion.short, short.blanks_models = short, True
    return fusion


def recall(examples: Iterable[Example], source: str | None = None,
           lists: Sequence[dict] | None = None, k: int = 50) -> float:
    """Share of examples whose target is among the candidates (``source`` None: the
    union), or among the first ``k`` of one source's list (``lists`` per example)."""
    examples = list(examples)
    if not examples:
        return 0.0
    if source is None:
        return sum(e.target in e.ids for e in examples) / len(examples)
    return sum(e.target in {i for i, _ in lst.get(source, ())[:k]}
               for e, lst in zip(examples, lists)) / len(examples)
