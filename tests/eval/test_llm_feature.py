"""``llm-feature``: the fusion with and without the LLM's score as a column, learned from
the same cases; the column is scored out of fold on the shadow catalog."""

import functools
import re
import zlib

import numpy as np

from agent.llm.fake import FakeBackend
from agent.rank.verbalizer import VerbalizerRanker
from agent.retrieve.sources import HybridRetriever
from eval.experiment import evaluate_system
from eval.llm_feature import LLMFeature, sample_cases, train_llm_feature
from eval.protocols import make_split
from eval.two_stage import TwoStage, train_two_stage
from tests.eval.test_two_stage import QUIET, cycle_catalog, retriever_for
from tests.agent.retrieve.test_index import client  # noqa: F401  (the Chroma fixture)


def oracle(titles: dict[str, int]):
    """A scorer that knows the cycle: the candidate after the last liked title wins."""
    def score(messages, labels):
        text = messages[-1]["content"]
        last = re.search(r"Liked: (.*)", text).group(1).split("; ")[-1]
        if last not in titles:  # the content-free prompt of the calibration
            return [0.0] * len(labels)
        after = {v: k for k, v in titles.items()}[titles[last] % 12 + 1]
        lines = dict(re.findall(r"^([A-Z])\. (.*?) \|", text, re.M))
        return [0.0 if lines.get(lab) == after else -5.0 for lab in labels]
    return score


def noise(messages, labels, salt: int = 0):
    rng = np.random.default_rng([zlib.crc32(messages[-1]["content"].encode()), salt])
    return rng.normal(size=len(labels)).tolist()


def systems(client, scorer, monkeypatch):  # noqa: F811
    # What came next in other histories gives the cycle away, and so does EASE's score
    # of the last item: without them and a sequence model, the sources only half know
    # the next item.
    monkeypatch.setattr(HybridRetriever, "transition", lambda self, *a, **k: [])
    monkeypatch.setattr("agent.models.ease.RECENT", ())
    split = make_split(cycle_catalog(), n_negatives=3)
    cat = split.train_catalog
    retriever = retriever_for(client, cat)  # no sequence model: the sources half know
    fusion, _, examples = train_two_stage(cat, split, retriever, **QUIET,
                                          sequential_for=lambda *a: None)
    base = TwoStage(cat, retriever, fusion)
    base.train_examples = examples
    backend = FakeBackend(scorer)
    catalogs = []

    def ranker_for(catalog):
        catalogs.append(catalog)
        return VerbalizerRanker(backend, catalog, n_llm=5, few_shot=False)

    off, on, report = train_llm_feature(base, split, ranker_for, cases=1000, log=lambda m: None,
                                        progress=False)
    plain = TwoStage(cat, retriever, off, name="llm-feature-off")
    system = LLMFeature(base, off, on, ranker_for(cat), report)
    metrics = {s.name: evaluate_system(s, split.test, split, progress=False).metrics["ndcg@10"]
               for s in (plain, system)}
    return metrics, report, catalogs, backend, split


def test_a_column_that_knows_the_next_item_is_learned_and_lifts_the_fusion(
        client, monkeypatch):  # noqa: F811
    split = make_split(cycle_catalog(), n_negatives=3)
    titles = {it.title: i for i, it in split.train_catalog.items.items()}
    metrics, report, catalogs, backend, used = systems(client, oracle(titles), monkeypatch)
    assert report["cases"] == 3 * len(split.valid)  # every case: fewer than 1000
    assert metrics["llm-feature"] > metrics["llm-feature-off"] + 0.1
    assert report["importance_llm"] == max(report["importances"].values())
    # Training prompts were written from the shadow catalog (the held-out items unseen),
    # test prompts from the training catalog.
    shadow, serving = catalogs[0], catalogs[-1]
    assert shadow is not serving and serving is used.train_catalog
    assert sum(it.popularity for it in shadow.items.values()) < \
        sum(it.popularity for it in serving.items.values())


def test_a_column_of_noise_gains_nothing(client, monkeypatch):  # noqa: F811
    # On 80 users a noise column's share of the gain is itself noisy (0.05-0.27 over
    # draws of the noise): the median of five draws is the column's typical weight.
    shares = []
    for salt in range(5):
        metrics, report, *_ = systems(client, functools.partial(noise, salt=salt), monkeypatch)
        assert metrics["llm-feature"] <= metrics["llm-feature-off"] + 0.05
        shares.append(report["importance_llm"])
    assert float(np.median(shares)) < 0.2


def test_cases_are_sampled_by_whole_users():
    from agent.rank.fusion import Example

    ex = [Example([1], np.zeros((1, 1)), 1, u) for u in [1, 1, 1, 2, 2, 3, 3, 3, 4]]
    chosen = sample_cases(ex, 4)
    users = {ex[k].user for k in chosen}
    assert len(chosen) >= 4 and all(k in chosen for k, e in enumerate(ex) if e.user in users)
    assert sample_cases(ex, 4) == chosen and sorted(sample_cases(ex, 100)) == list(range(9))
