"""The ``tailor`` system: leak-free fusion examples, and a fusion that beats its sources
when one source carries the signal."""

import numpy as np
import pytest

from agent.data.catalog import Catalog
from agent.rank.fusion import feature_names
from agent.retrieve.index import build_index, open_collection
from agent.retrieve.sources import HybridRetriever
from agent.understand.state import known_user_state
from eval.experiment import evaluate_system
from eval.protocols import make_split
from eval.two_stage import TwoStage, make_example, train_two_stage
from tests.conftest import tiny_items
from tests.agent.retrieve.test_index import HashEmbedder, client  # noqa: F401  (the Chroma fixture)

QUIET = {"log": lambda m: None, "progress": False}


class Successor:
    """A sequence model that knows the cycle: the item after ``history[-1]`` scores 1."""

    def __init__(self, n):
        self.n = n

    def scores(self, history):
        s = np.zeros(self.n)
        s[history[-1] % 12 + 1] = 1.0
        return s


def cycle_catalog(users: int = 80, rare: int | None = None) -> Catalog:
    """Users watch a rotation of the cycle 1 -> 2 -> ... -> 12. ``rare``: an item that is
    never watched except as some users' second-last (validation) item."""
    rows = []
    for u in range(1, users + 1):
        start = u % 12
        seq = [(start + k) % 12 + 1 for k in range(7)]
        if rare is not None:
            seq = [i for i in seq if i != rare]
            if u % 3 == 0:
                seq = seq[:-1] + [rare, seq[-1]]
        rows += [(u, i, t) for t, i in enumerate(seq)]
    u, i, t = (np.array(x) for x in zip(*rows))
    return Catalog(tiny_items(), {}, u.astype(np.int32), i.astype(np.int32), t, head={1, 3, 5})


def retriever_for(client, catalog, sequential=None):  # noqa: F811
    emb = HashEmbedder()
    build_index(client, catalog, emb, "tiny", log=lambda m: None)
    return HybridRetriever(open_collection(client, emb, "tiny"), emb, catalog,
                           sequential=sequential)


def test_training_examples_see_nothing_of_their_targets(client):  # noqa: F811
    # Item 12 is only ever watched as some users' second-last (validation) item, so it
    # is always among the held-out items the fusion learns on: the sources fitted on the
    # truncated histories have never seen it, so co-watching and popularity cannot
    # propose it, and the shadow sequence model is trained without it.
    from agent.rank.shadow import shadow_examples

    split = make_split(cycle_catalog(rare=12), n_negatives=3)
    cat = split.train_catalog
    retriever = retriever_for(client, cat)
    sequences = {c.user: [*c.history, c.target] for c in split.valid}
    seen = {}

    def sequential_for(before, truncated, seqs):
        seen.update(before=before, truncated=truncated)
        return None

    examples, lists, last = shadow_examples(retriever, sequences, cat, sequential_for,
                                            **QUIET)
    assert seen["before"].get(12).popularity == 0
    assert not any(12 in h for h in seen["truncated"].values())
    for u, h in seen["truncated"].items():  # the truncated history is a prefix
        assert sequences[u][:len(h)] == h and len(h) >= 3
    targets = [(e, lst) for e, lst in zip(examples, lists) if e.target == 12]
    assert targets and sum(last) == len(sequences)
    for ex, lst in targets:
        assert 12 not in {i for i, _ in lst["cowatch"]}
        assert 12 not in {i for i, _ in lst.get("transition", [])}
        assert 12 not in {i for i, _ in lst.get("popular", [])[:5]}
        row = ex.X[ex.ids.index(12)] if 12 in ex.ids else None
        if row is not None:  # proposed by content/semantic only, with zero popularity
            assert row[feature_names().index("log_popularity")] == 0.0


def test_serving_examples_read_the_training_split_only(client):  # noqa: F811
    split = make_split(cycle_catalog(rare=12), n_negatives=3)
    cat = split.train_catalog
    assert cat.get(12).popularity == 0
    retriever = retriever_for(client, cat)
    for case in [c for c in split.valid if c.target == 12]:
        _, lists = make_example(retriever, case, cat)
        assert 12 not in {i for i, _ in lists["cowatch"]}
        assert 12 not in {i for i, _ in lists.get("transition", [])}


def test_what_came_next_proposes_the_next_item_of_the_cycle(client):  # noqa: F811
    # co-watching cannot tell the item after from the item before; the order can
    cat = make_split(cycle_catalog(), n_negatives=3).train_catalog
    assert cat.followed_by([4, 5], 3)[0][0] == 6
    assert cat.followed_by([9, 2], 3)[0][0] == 3  # the latest item weighs most
    assert 5 not in {i for i, _ in cat.followed_by([4, 5], 12)}  # nor what was watched
    co = dict(cat.cowatched_with([5], 12))
    assert co[4] == pytest.approx(co[6], abs=0.02)
    state = known_user_state([3, 4, 5])
    assert retriever_for(client, cat).lists(state)["transition"][0][0] == 6


def test_the_fusion_learns_to_trust_the_source_that_knows(client):  # noqa: F811
    split = make_split(cycle_catalog(), n_negatives=3)
    cat = split.train_catalog
    retriever = retriever_for(client, cat, Successor(cat.max_id + 1))
    fusion, report, examples = train_two_stage(cat, split, retriever, **QUIET,
                                     sequential_for=lambda *a: Successor(cat.max_id + 1))
    assert report["train_cases"] == 3 * len(split.valid)  # 6 items known, 3 kept
    assert report["recall@50_valid"]["union"] == 1.0
    assert report["recall@50_valid"]["sequential"] == 1.0
    imp = report["importances"]
    assert max(imp, key=imp.get).startswith("sequential")
    system = TwoStage(cat, retriever, fusion)
    result = evaluate_system(system, split.test, split, progress=False)
    assert result.metrics["hr@10"] == 1.0 and result.metrics["ndcg@10"] > 0.9


def test_the_agents_fusion_learns_without_the_held_out_last_items(catalog):
    from agent.models.sasrec import catalog_sequences
    from agent.rank.shadow import shadow_split

    sequences = catalog_sequences(catalog)
    truncated, cases = shadow_split(sequences, held=1, keep=2)
    assert (1, [1, 2, 3], 8) in cases and len(cases) == sum(len(s) > 2 for s in sequences.values())
    for user, history, target in cases:
        assert sequences[user] == history + [target] and truncated[user] == history
    short = [u for u, s in sequences.items() if len(s) <= 2]
    assert all(truncated[u] == sequences[u] for u in short)  # kept whole, no case
    truncated, cases = shadow_split(sequences, held=3, keep=1)
    for user, history, target in cases:  # every held-out position, in time order
        assert len(truncated[user]) <= len(history) < len(sequences[user])
        assert sequences[user][len(history)] == target


def test_the_agents_fusion_is_trained_once_and_cached(client, tmp_path):  # noqa: F811
    from agent.models.sasrec import SASRecConfig, prepare_sasrec
    from agent.rank.shadow import find_fusion, prepare_fusion

    class S:  # the settings fields the caches read
        models_dir, dataset = tmp_path, "tiny"

    cat = cycle_catalog(60)
    cfg = SASRecConfig(dim=8, blocks=1, heads=1, max_len=8, dropout=0.0, max_epochs=2,
                       eval_every=1, patience=3)
    seq = prepare_sasrec(S, cat, log=lambda m: None, cfg=cfg)
    assert find_fusion(S, seq) is None and find_fusion(S, None) is None
    emb = HashEmbedder()
    build_index(client, cat, emb, "tiny", log=lambda m: None)
    col = open_collection(client, emb, "tiny")
    path = prepare_fusion(S, cat, col, emb, seq, log=lambda m: None, progress=False)
    assert prepare_fusion(S, cat, col, emb, seq, log=lambda m: 1 / 0) == path  # cached
    fusion = find_fusion(S, seq)
    assert fusion.features == feature_names() and fusion.info["sequential"] == seq.name
    assert 0 < fusion.info["recall_union"] <= 1
    # the shadow sequence model (histories without their last items) is cached too
    assert len(list(tmp_path.glob("shadow-sasrec-tiny-*"))) == 1


def test_an_ensemble_of_trainings_is_trained_once_and_fused_as_one(client, tmp_path):  # noqa: F811
    """``TAILOR_SASREC_MODELS=2``: two seeds are trained and cached, the agent reads
    their ensemble, and the fusion (with a shadow model per seed) is keyed by both."""
    import torch

    from agent.models.ensemble import (SequenceEnsemble, find_sequential, prepare_sequential,
                                       sequential_dirs)
    from agent.rank.shadow import find_fusion, prepare_fusion

    class S:  # the settings fields the caches read
        models_dir, dataset, sasrec_models, sasrec_epochs, sasrec_max_len = \
            tmp_path, "tiny", 2, 2, 8

    cat = cycle_catalog(60)
    assert sequential_dirs(S, cat) is None and find_sequential(S, cat) is None
    dirs = prepare_sequential(S, cat, log=lambda m: None)
    assert len(set(dirs)) == 2 and sequential_dirs(S, cat) == dirs
    assert prepare_sequential(S, cat, log=lambda m: 1 / 0) == dirs  # cached: no log
    model = find_sequential(S, cat)
    assert isinstance(model, SequenceEnsemble)
    assert [m.cfg.seed for m in model.members] == [0, 1]
    first, second = (m.net.state_dict()["items.weight"] for m in model.members)
    assert not torch.equal(first, second)  # two trainings, not one loaded twice
    emb = HashEmbedder()
    build_index(client, cat, emb, "tiny", log=lambda m: None)
    col = open_collection(client, emb, "tiny")
    assert find_fusion(S, dirs) is None
    path = prepare_fusion(S, cat, col, emb, dirs, log=lambda m: None, progress=False)
    fusion = find_fusion(S, dirs)
    assert path.is_dir() and fusion.info["sequential"] == f"{dirs[0].name}+{dirs[1].name}"
    assert find_fusion(S, dirs[:1]) is None  # the one-model fusion is another
    assert len(list(tmp_path.glob("shadow-sasrec-tiny-*"))) == 2


def cycle_system(client):  # noqa: F811
    """The cycle's split and a ``tailor`` system over it whose sequence model knows the
    cycle (``Successor``), with its fusion's training cases."""
    split = make_split(cycle_catalog(), n_negatives=3)
    cat = split.train_catalog
    retriever = retriever_for(client, cat, Successor(cat.max_id + 1))
    fusion, _, examples = train_two_stage(
        cat, split, retriever, **QUIET, sequential_for=lambda *a: Successor(cat.max_id + 1))
    system = TwoStage(cat, retriever, fusion)
    system.train_examples = examples
    return split, system, examples


def test_the_ablation_finds_the_source_that_carries_the_signal(client, monkeypatch):  # noqa: F811
    from eval.ablation import ablate

    # what came next in other histories knows the cycle as well as the sequence model,
    # and EASE's score of the last item nearly so: without them, one source carries it
    monkeypatch.setattr(HybridRetriever, "transition", lambda self, *a, **k: [])
    monkeypatch.setattr("agent.models.ease.RECENT", ())
    split, system, examples = cycle_system(client)
    test = [system.example(c)[0] for c in split.test]
    table = ablate(examples, test, [set(c.history) for c in split.test], log=lambda m: None)
    assert table["all"]["ndcg@10"] > 0.9 and table["all"]["recall"] == 1.0
    # co-watching knows the cycle in part (the item after the last one is co-watched
    # with it), so it recovers some of what the sequence model gave
    assert table["-sequential"]["ndcg@10"] < table["all"]["ndcg@10"] - 0.1
    assert table["-year"]["ndcg@10"] > 0.9  # a feature that carries nothing costs nothing
    assert set(table) >= {"-cowatch", "-semantic", "-content", "-popular", "-rrf",
                          "-transition"}


def test_tailor_variants_share_one_build_of_each_users_candidates(client):  # noqa: F811
    split = make_split(cycle_catalog(), n_negatives=3)
    cat = split.train_catalog
    retriever = retriever_for(client, cat, Successor(cat.max_id + 1))
    fusion, _, _ = train_two_stage(cat, split, retriever, **QUIET,
                                   sequential_for=lambda *a: Successor(cat.max_id + 1))
    built = []
    original = retriever.lists
    retriever.lists = lambda *a, **k: built.append(1) or original(*a, **k)
    shared: dict = {}
    plain = TwoStage(cat, retriever, fusion, examples=shared)
    other = TwoStage(cat, retriever, fusion, name="tailor:0.5", examples=shared)
    case = split.test[0]
    assert plain.rank_pool(case) == other.rank_pool(case)
    assert plain.example(case)[0] is other.example(case)[0] and len(built) == 1


def test_the_tail_choice_reads_only_training_cases(client):  # noqa: F811
    from dataclasses import replace

    from eval.tail_choice import BOOSTS, least_boost, run_tail_choice

    split, system, examples = cycle_system(client)
    out = run_tail_choice(system, replace(split, test=None), log=lambda m: None)
    curve = {float(b): v for b, v in out["curve"].items()}
    assert sorted(curve) == list(BOOSTS) and out["cases"] == len(examples)
    assert out["chosen"] == least_boost(curve, out["reference"])
    # the fusion alone follows the sequence model, which knows the cycle
    assert curve[0.0]["ndcg@10"] > 0.9 and out["reference"]["ndcg@10"] > 0.9
    assert curve[1.0]["tail_share@10"] >= curve[0.0]["tail_share@10"]


def test_the_tail_floor_keeps_the_sequence_models_tail_count(catalog):
    from agent.rank.fusion import Example, feature_names
    from eval.two_stage import floored

    # head = {1, 3, 5, 11}; the sequence model's first two candidates: 12 and 10 (tail)
    ids = [5, 3, 1, 12, 10, 4]
    X = np.full((len(ids), len(feature_names())), 99.0)
    col = feature_names().index("sequential_rank")
    X[ids.index(12), col], X[ids.index(10), col], X[0, col] = 0, 1, 2
    ex = Example(ids, X, 12, 1)
    assert floored(ids, ex, catalog, k=2) == [12, 10, 5, 3, 1, 4]
    assert floored(ids, ex, catalog, k=3) == [5, 12, 10, 3, 1, 4]  # 5 is its third
    assert floored([12, 10, 5], ex, catalog, k=2) == [12, 10, 5]


def test_the_tail_choice_ranks_as_the_floored_system_does(client):  # noqa: F811
    from dataclasses import replace

    from eval.tail_choice import run_tail_choice

    split, system, _ = cycle_system(client)
    system.tail_floor = True
    out = run_tail_choice(system, replace(split, test=None), log=lambda m: None)
    assert out["tail_floor"] is True
    assert out["curve"]["0"]["tail_share@10"] >= out["reference"]["tail_share@10"]


def test_the_tail_choice_curve_applies_the_floor(catalog):
    from agent.rank.fusion import Example, feature_names
    from agent.rank.rerank import TailDiversityReranker
    from eval.tail_choice import reranked

    ids = [5, 3, 1, 11, 2, 6, 7, 8, 9, 12, 10, 4]  # the head first; 10 and 4 below the top 10
    X = np.full((len(ids), len(feature_names())), 99.0)
    tails = [i for i in ids if catalog.is_tail(i)]
    for rank, i in enumerate(tails):  # the sequence model's top 8 are all tail items
        X[ids.index(i), feature_names().index("sequential_rank")] = rank
    ex = Example(ids, X, 12, 1)
    scored = [(i, float(-k)) for k, i in enumerate(ids)]
    rr = TailDiversityReranker(catalog)
    assert reranked(scored, rr, 0.0) == ids[:10]
    assert set(reranked(scored, rr, 0.0, ex)) == set(tails) | {5, 3}


def dated(catalog: Catalog) -> Catalog:
    """``catalog`` with each user's k-th item on day ``user + 3k``: histories overlap in
    time, so a case's moment splits other users' interactions into before and after."""
    from agent.data.stats import DAY

    pos = {}
    times = []
    for u in catalog.user.tolist():
        times.append((u + 3 * pos.get(u, 0)) * DAY)
        pos[u] = pos.get(u, 0) + 1
    return Catalog(list(catalog.items.values()), {}, catalog.user, catalog.item,
                   np.array(times, dtype=np.int64), catalog.head)


def brute_recent(catalog: Catalog, ids, when: int, days: int) -> list[float]:
    """Each id's share of ``catalog``'s interactions in the ``days`` days before ``when``."""
    from agent.data.stats import DAY

    t = np.asarray(catalog.times)
    inside = (t < when) & (t >= when - days * DAY)
    return [float(np.sum(inside & (catalog.item == i)) / inside.sum()) for i in ids]


def test_recent_popularity_is_counted_at_the_users_last_title_never_after(client):  # noqa: F811
    from agent.rank.fusion import RECENT_DAYS
    from agent.rank.shadow import shadow_examples

    split = make_split(dated(cycle_catalog()), n_negatives=3)
    cat = split.train_catalog
    assert cat.times is not cat.timestamp and cat.timestamp.max() < 10  # positions
    retriever = retriever_for(client, cat)
    sequences = {c.user: [*c.history, c.target] for c in split.valid}
    seen = {}

    def sequential_for(before, truncated, seqs):
        seen["before"] = before
        return None

    examples, _, _ = shadow_examples(retriever, sequences, cat, sequential_for, **QUIET)
    before = seen["before"]
    F = feature_names()
    for ex in examples[::7]:
        when = before.last_time(ex.user)  # the truncated history's last title
        assert when == max(t for u, t in zip(before.user, before.times) if u == ex.user)
        for k, d in enumerate(RECENT_DAYS):
            got = ex.X[:, F.index(f"recent_{d}d")]
            assert np.allclose(got, brute_recent(before, ex.ids, when, d))
    # A test case's columns are counted at the user's last training title.
    case = split.test[0]
    ex, _ = TwoStage(cat, retriever, None).example(case)
    when = cat.last_time(case.user)
    assert np.allclose(ex.X[:, F.index("recent_30d")], brute_recent(cat, ex.ids, when, 30))


def test_a_catalog_rebuilt_from_histories_keeps_when_each_title_was_watched():
    from agent.data.catalog import catalog_from_histories

    base = dated(cycle_catalog(users=4))
    rebuilt = catalog_from_histories(base, {2: [4, 5, 6], 3: [5, 6]}, "part")
    assert rebuilt.timestamp.tolist() == [0, 1, 2, 0, 1]
    assert (rebuilt.times // 86_400).tolist() == [5, 8, 11, 6, 9]  # day u + 3k
    assert rebuilt.last_time(3) == 9 * 86_400 and rebuilt.last_time(9) is None
    # A title the base catalog never saw the user watch: no times to keep.
    assert catalog_from_histories(base, {2: [1]}, "x").times.tolist() == [0]
