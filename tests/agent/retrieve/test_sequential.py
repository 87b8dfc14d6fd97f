"""The sequential candidate source (SASRec over the liked titles) inside the agent."""

import numpy as np
import pytest

from agent.models.sasrec import (SASRecConfig, catalog_sequences, find_sasrec, model_dir,
                                 prepare_sasrec)
from agent.retrieve.sources import HybridRetriever
from agent.types import DialogueState


class Planted:
    """A sequence model whose scores are fixed: item i scores ``i`` (higher ids first)."""

    def __init__(self, n):
        self.n, self.seen = n, []

    def scores(self, history):
        self.seen.append(list(history))
        return np.arange(self.n, dtype=np.float64)


def test_sequential_source_reads_liked_in_order_and_keeps_constraints(catalog):
    model = Planted(catalog.max_id + 1)
    r = HybridRetriever(None, None, catalog, sequential=model)
    state = DialogueState(liked=(5, 1), year_min=1990, shown=(12,))
    got = [i for i, _ in r.sequential(state, 3)]
    assert model.seen == [[5, 1]]
    assert got == [8, 7, 6]  # 12 was shown, 9-11 are older than 1990
    assert r.sequential(DialogueState(genres=("Comedy",)), 3) == []  # nothing liked


def test_no_model_no_source(catalog):
    assert HybridRetriever(None, None, catalog).sequential(DialogueState(liked=(1,)), 3) == []


def test_catalog_sequences_are_time_ordered_and_unique(catalog):
    seqs = catalog_sequences(catalog)
    assert seqs[1] == [1, 2, 3, 8] and seqs[4] == [2, 8, 3, 6, 12]


def test_the_cached_model_is_trained_once_and_keyed_by_config(catalog, tmp_path):
    class S:  # the two settings fields the cache reads
        models_dir, dataset = tmp_path, "tiny"

    cfg = SASRecConfig(dim=8, blocks=1, heads=1, max_len=6, dropout=0.0, max_epochs=2,
                       eval_every=1, patience=3)
    assert find_sasrec(S, catalog, cfg) is None
    path = prepare_sasrec(S, catalog, log=lambda m: None, cfg=cfg)
    assert path == model_dir(tmp_path, "tiny", catalog, cfg) and path.is_dir()
    assert prepare_sasrec(S, catalog, log=lambda m: 1 / 0, cfg=cfg) == path  # cached: no log
    assert find_sasrec(S, catalog, cfg).scores([1, 2]).shape == (catalog.max_id + 1,)
    other = SASRecConfig(dim=8, blocks=1, heads=1, max_len=6, max_epochs=1)
    assert model_dir(tmp_path, "tiny", catalog, other) != path


def test_a_known_users_history_comes_before_the_liked_titles(catalog):
    model = Planted(catalog.max_id + 1)
    r = HybridRetriever(None, None, catalog, sequential=model)
    r.sequential(DialogueState(liked=(5, 1)), 3, history=(2, 1, 8))
    assert model.seen == [[2, 8, 5, 1]]  # a liked title said again moves to the end
    cowatched = {i for i, _ in r.cowatched(DialogueState(), 10, history=(5,))}
    assert cowatched == {i for i, _ in r.cowatched(DialogueState(liked=(5,)), 10)} != set()


class ByItemId:
    """A fusion that ranks the highest item id first, whatever the features."""

    blanks_models = False

    def for_evidence(self, titles):
        return self

    def rank(self, ids, X):
        assert X.shape[0] == len(ids)
        return sorted(((i, float(i)) for i in ids), reverse=True)


def test_the_learned_fusion_orders_the_candidates_when_there_is_one(catalog):
    r = HybridRetriever(None, None, catalog, sequential=Planted(catalog.max_id + 1),
                        fusion=ByItemId())
    lists = {"cowatch": [(3, 1.0), (8, 0.5)], "sequential": [(2, 0.9)], "avoid": [(12, 1.0)]}
    got = r.learned(DialogueState(liked=(1,)), lists, 2)
    assert [(c.item_id, c.sources) for c in got] == [(8, ("cowatch",)), (3, ("cowatch",))]
    assert got[0].cowatch == 0.5 and got[0].score == 8.0
    # "avoid" alone proposes nothing; RRF without a fusion keeps its own order.
    assert 12 not in [c.item_id for c in r.learned(DialogueState(liked=(1,)), lists, 9)]
    plain = HybridRetriever(None, None, catalog).rrf(DialogueState(liked=(1,)), lists, 2)
    assert [c.item_id for c in plain] == [2, 3]  # first of their lists: a tie, lower id first


@pytest.mark.parametrize("ask", [dict(well_liked=True), dict(lesser_known=True),
                                 dict(tail_boost=0.0)])
def test_an_ask_for_well_liked_hidden_or_popular_films_is_fused_by_rrf(catalog, ask):
    r = HybridRetriever(None, None, catalog, fusion=ByItemId())
    plain = HybridRetriever(None, None, catalog)
    liked = DialogueState(liked=(1,), genres=("Sci-Fi",))
    lists = {"content": [(2, 0.9), (7, 0.5)], "popular": [(3, 95.0)]}
    r.lists = plain.lists = lambda state, pool, history=(): lists
    assert [c.item_id for c in r.retrieve(liked, 3)] == [7, 3, 2]  # the fusion's order
    asked = liked.with_changes(**ask)
    assert [c.item_id for c in r.retrieve(asked, 3)] == [c.item_id for c in plain.retrieve(asked, 3)]


def test_the_shared_fitting_set_follows_the_state_it_is_asked_for(catalog):
    from agent.understand.state import satisfies

    r = HybridRetriever(None, None, catalog)
    older, newer = DialogueState(year_max=1985), DialogueState(year_min=1990)
    for state in (older, newer, older):
        want = {i for i, it in catalog.items.items() if satisfies(it, state)}
        assert r.fitting(state) == want and want


def test_candidates_carry_their_place_in_the_sequence_models_list(catalog, monkeypatch):
    model = Planted(catalog.max_id + 1)
    r = HybridRetriever(None, None, catalog, sequential=model)
    monkeypatch.setattr(HybridRetriever, "semantic", lambda self, *a, **k: [])
    state = DialogueState(liked=(5, 1))
    places = {i: k for k, (i, _) in enumerate(r.sequential(state, 50))}
    cands = r.retrieve(state, 6)
    assert len(cands) == 6 and any(c.sequential_rank is not None for c in cands)
    assert all(c.sequential_rank == places.get(c.item_id) for c in cands)
    bare = HybridRetriever(None, None, catalog).retrieve(DialogueState(liked=(5,)), 6)
    assert all(c.sequential_rank is None for c in bare)


def test_model_scores_calibrate_the_sequence_models_scores_for_every_candidate(catalog):
    model = Planted(catalog.max_id + 1)  # item i scores i
    r = HybridRetriever(None, None, catalog, sequential=model)
    state = DialogueState(liked=(5, 1))
    got = r.model_scores(state, [3, 8, catalog.max_id + 7], history=(2,))
    # measured over the items that fit: here every item but the two liked ones
    v = np.array(sorted(r.fitting(state)), dtype=np.float64)
    assert 5 not in v and 1 not in v and len(v) == len(catalog) - 2
    lse = np.log(np.exp(v).sum())
    np.testing.assert_allclose(got["sequential_logp"][:2], [3 - lse, 8 - lse])
    np.testing.assert_allclose(got["sequential_gap"][:2], [3 - v.max(), 8 - v.max()])
    np.testing.assert_allclose(got["sequential_z"][:2], (np.array([3, 8]) - v.mean()) / v.std())
    # an id the models never saw (the history's own popularity is the user's, not its)
    assert all(np.isnan(got[k][2]) for k in got if k != "history_popularity")
    assert model.seen == [[2, 5, 1]]
    for name, part in (("ease", [2, 5, 1]), ("ease_last1", [1]), ("ease_last5", [2, 5, 1])):
        np.testing.assert_allclose(got[name][:2], catalog.ease.scores(part)[[3, 8]])
    mean = np.mean([np.log1p(catalog.get(i).popularity) for i in (2, 5, 1)])
    np.testing.assert_allclose(got["history_popularity"], [mean] * 3)
    np.testing.assert_allclose(got["popularity_vs_history"][:2],
                               [np.log1p(catalog.get(i).popularity) - mean for i in (3, 8)])
    r.sequential(state, 3, history=(2,))
    assert model.seen == [[2, 5, 1]]  # the source reuses the same turn's scores
    assert r.model_scores(DialogueState(), [3]) == {}  # nothing to read
    older = state.with_changes(year_max=1985)  # the best that fits is the best offered
    best = max(r.fitting(older))
    assert r.model_scores(older, [best])["sequential_gap"][0] == 0.0
    bare = HybridRetriever(None, None, catalog).model_scores(state, [3])
    assert set(bare) == {"ease", "ease_last1", "ease_last5", "ease_last20",
                         "popularity_vs_history", "history_popularity"}
    # a model older than every item that fits (all added since): no opinion, no error
    old = HybridRetriever(None, None, catalog, sequential=Planted(3))
    got = old.model_scores(DialogueState(liked=(1, 2)), [2, 5])
    assert got["sequential_gap"][0] == 0.0 and np.isnan(got["sequential_gap"][1])



def test_a_turn_with_few_titles_is_ranked_by_the_fusion_without_model_columns(catalog):
    from agent.rank.fusion import MODEL_FEATURES, SHORT_EVIDENCE, feature_names

    seen = {}

    class Recording(ByItemId):
        def __init__(self, name, short=None):
            self.name, self.short, self.blanks_models = name, short, short is None

        def for_evidence(self, titles):
            return self.short if titles < SHORT_EVIDENCE else self

        def rank(self, ids, X):
            seen[self.name] = X
            return super().rank(ids, X)

    fusion = Recording("full", Recording("short"))
    r = HybridRetriever(None, None, catalog, sequential=Planted(catalog.max_id + 1),
                        fusion=fusion)
    lists = {"cowatch": [(3, 1.0), (8, 0.5)]}
    cols = [feature_names().index(f) for f in MODEL_FEATURES]
    r.learned(DialogueState(liked=(1, 2)), lists, 2)
    assert set(seen) == {"short"} and np.isnan(seen["short"][:, cols]).all()
    r.learned(DialogueState(liked=(1, 2)), lists, 2, history=(4, 5, 6))
    assert not np.isnan(seen["full"][:, cols]).any()  # five titles: the full fusion
