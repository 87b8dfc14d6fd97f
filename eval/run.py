"""``tailor eval``: build the systems, run them on one split, write the report."""

from __future__ import annotations

import time
from pathlib import Path

from agent.domain.movielens.film import credits
from agent.errors import ConfigError

SYSTEMS = ("popularity", "itemknn", "sasrec", "tailor", "tailor-nofloor", "retrieval",
           "hybrid", "llm-zero", "llm-few", "llm-lora", "llm-lora-tail", "llm-feature")
DEFAULT_SYSTEMS = "popularity,itemknn,retrieval,hybrid,llm-zero,llm-few"


def parse_systems(text: str) -> list[tuple[str, float | None]]:
    """``"popularity,llm-lora-tail:0.5"`` -> ``[("popularity", None), ("llm-lora-tail", 0.5)]``.

    >>> parse_systems("itemknn, llm-lora-tail:0.25")
    [('itemknn', None), ('llm-lora-tail', 0.25)]
    """
    out = []
    for raw in (t.strip() for t in text.split(",")):
        if not raw:
            continue
        name, _, arg = raw.partition(":")
        if name not in SYSTEMS:
            raise ConfigError(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
        try:
            out.append((name, float(arg) if arg else None))
        except ValueError:
            raise ConfigError(f"{raw!r}: the part after ':' must be a number") from None
        if name == "sasrec" and arg and out[-1][1] not in range(1, 9):
            raise ConfigError(f"{raw!r}: the number of SASRec trainings must be 1 to 8")
    if not out:
        raise ConfigError("no systems given")
    return out


def item_vectors(collection) -> dict:
    import numpy as np

    got = collection.get(include=["embeddings", "metadatas"])
    return {int(m["item_id"]): np.asarray(e, dtype=np.float32)
            for m, e in zip(got["metadatas"], got["embeddings"])}


def build_systems(specs, settings, split, collection, embedder, backend_factory, log=print,
                  fusion_users: int | None = None):
    """Instantiate the named systems over the training catalog of ``split`` (a
    ``tailor`` system keeps its fusion's training cases as ``train_examples``;
    ``fusion_users``: its fusion learns from that many users' cases, None: all)."""
    from dataclasses import replace

    from agent.build import ranker_options
    from agent.rank.rerank import TailDiversityReranker, check_knob
    from agent.rank.verbalizer import VerbalizerRanker
    from agent.retrieve.sources import HybridRetriever
    from eval import systems as S

    cat = split.train_catalog
    vectors = item_vectors(collection)
    backends, made = {}, {}

    def hybrid():
        if "hybrid" not in made:
            made["hybrid"] = S.Hybrid(cat, HybridRetriever(collection, embedder, cat))
        return made["hybrid"]

    def sasrec():
        if "sasrec" not in made:
            from agent.models.sasrec import config_for
            from eval.sasrec import SASRecSystem

            made["sasrec"] = SASRecSystem.train(cat, split, config_for(settings, cat), log=log,
                                                cache_dir=settings.models_dir)
        return made["sasrec"]

    def sequential(n: int):
        """``n`` SASRec trainings of the baseline's config, seeds 0..n-1, as one scorer."""
        if ("sequential", n) not in made:
            from agent.models.ensemble import member_configs, one_or_ensemble
            from eval.sasrec import SASRecSystem

            base = sasrec()
            made["sequential", n] = one_or_ensemble([base.model] + [
                SASRecSystem.train(cat, split, cfg, log=log, cache_dir=settings.models_dir).model
                for cfg in member_configs(base.cfg, n)[1:]])
        return made["sequential", n]

    def tailor(tail_boost, label: str = "tailor"):
        from eval.two_stage import TwoStage, train_two_stage

        if "fusion" not in made:
            retriever = HybridRetriever(collection, embedder, cat,
                                        sequential=sequential(settings.sasrec_models))
            made["fusion"] = (retriever, *train_two_stage(
                cat, split, retriever, log, cache_dir=settings.models_dir,
                users=fusion_users), {})
        retriever, fusion, report, examples, candidates = made["fusion"]
        floor = bool(settings.tail_floor) and label == "tailor"
        name = label if arg is None else f"{label}:{tail_boost:g}"
        system = TwoStage(cat, retriever, fusion, TailDiversityReranker(
            cat, 0.0, settings.diversity), tail_boost, name=name, examples=candidates,
            tail_floor=floor)
        system.report = dict(report, tail_boost=tail_boost, tail_floor=floor)
        system.train_examples = examples
        return system

    def backend(adapter):
        if adapter not in backends:
            backends[adapter] = backend_factory(adapter)
        return backends[adapter]

    def llm_feature(cases):  # two systems: the fusion with and without the LLM column
        from eval.llm_feature import CASES, LLMFeature, train_llm_feature
        from eval.two_stage import TwoStage

        base = tailor(0.0)

        def ranker_for(catalog):
            return VerbalizerRanker(backend(settings.adapter), catalog, **ranker_options(settings))

        off, on, report = train_llm_feature(base, split, ranker_for,
                                            CASES if cases is None else int(cases), log=log)
        plain = TwoStage(cat, base.retriever, off, name="llm-feature-off",
                         examples=made["fusion"][4])
        plain.report = {"llm_feature": "the same cases as llm-feature, without the column"}
        return [plain, LLMFeature(base, off, on, ranker_for(cat), report)]

    def llm(name):
        if name not in made:
            adapter = settings.adapter if name == "llm-lora" else None
            if name == "llm-lora" and not adapter:
                raise ConfigError("llm-lora needs an adapter: --adapter NAME or TAILOR_ADAPTER "
                                  "(train one with `tailor finetune`)")
            options = ranker_options(replace(settings, adapter=adapter,
                                             rank_mode="few" if name == "llm-few" else "zero"))
            ranker = VerbalizerRanker(backend(adapter), cat, **options)
            made[name] = S.LLMRerank(name, hybrid(), ranker, settings.candidates)
        return made[name]

    built = []
    for name, arg in specs:
        if name == "popularity":
            built.append(S.Popularity(cat))
        elif name == "itemknn":
            built.append(S.ItemKNN(cat))
        elif name == "retrieval":
            built.append(S.EmbeddingRetrieval(cat, vectors))
        elif name == "sasrec" and arg is None:
            built.append(sasrec())
        elif name == "sasrec":  # "sasrec:2": the mean of two trainings (seeds 0 and 1)
            from eval.sasrec import SASRecSystem

            ensemble = SASRecSystem(cat, sequential(int(arg)))
            ensemble.name = f"sasrec:{int(arg)}"
            built.append(ensemble)
        elif name in ("tailor", "tailor-nofloor"):  # "tailor:0.1": another tail_boost
            built.append(tailor(check_knob("the tailor tail_boost",
                                           settings.tail_boost if arg is None else arg),
                                name))
        elif name == "hybrid":
            built.append(hybrid())
        elif name == "llm-feature":  # "llm-feature:500": the LLM scores ~500 training cases
            built += llm_feature(arg)
        elif name == "llm-lora-tail":
            strength = check_knob("the llm-lora-tail strength", 0.5 if arg is None else arg)
            built.append(S.TailRerank(llm("llm-lora"), TailDiversityReranker(
                cat, 0.0, settings.diversity), strength))
        else:
            built.append(llm(name))
    return built, vectors


class RetrievalOrder:
    """A ranker that keeps the retriever's order (the ``hybrid`` system in dialogue)."""

    def rank(self, state, cands):
        from agent.rank.verbalizer import Ranked

        return [Ranked(c.item_id, c.score, c.score, None) for c in cands]


def run_conversations(built, split, collection, embedder, n_users: int, seed: int,
                      log=print) -> dict:
    """Simulated dialogues against the agent for each conversational system."""
    from tqdm import tqdm

    from agent.recommender import Recommender
    from agent.retrieve.sources import HybridRetriever
    from agent.understand.linking import TitleIndex
    from eval.protocols import sample_users
    from eval.simulator import simulate, summarize

    cat = split.train_catalog
    index = TitleIndex(list(cat.items.values()))
    cases = sample_users(split.test, n_users, seed + 1)
    out = {}
    for system in built:
        if system.name not in ("hybrid", "tailor", "llm-zero", "llm-few", "llm-lora"):
            continue
        ranker = system.ranker if system.name.startswith("llm") else RetrievalOrder()
        # tailor: the split's SASRec and the learned fusion in the retriever, as in a
        # chat once they are trained; the others fuse by reciprocal rank.
        sequential, fusion = ((system.retriever.sasrec, system.fusion)
                              if system.name == "tailor" else (None, None))
        agent = Recommender(cat, index, HybridRetriever(collection, embedder, cat,
                                                        sequential=sequential, fusion=fusion),
                            ranker, None, n_candidates=30, top_k=10, explain="template")
        dialogues = [simulate(agent, c, cat) for c in tqdm(cases, desc=f"dialogues {system.name}",
                                                           unit="user", leave=False)]
        out[system.name] = summarize(dialogues)
        log(f"{system.name}: conversational success@10 within 5 turns "
            f"{out[system.name]['success@10']:.3f} by turn {out[system.name]['success@10_by_turn']}")
    return out


def run_evaluation(settings, systems: str, out: Path, users: int | None, seed: int,
                   log=print, backend_factory=None, conversation_users: int = 0,
                   llm_users: int | None = None, ablation: bool = False,
                   tail_choice: bool = False,
                   fusion_users: int | None = None) -> dict:
    """Evaluate ``systems`` on ``settings.dataset``; writes ``out/report.{json,md}`` and plots.

    ``fusion_users``: a ``tailor`` system's fusion learns from a fixed-seed sample of
    that many users' cases (a quick run; None: every user's).
    ``ablation``: also retrain the first ``tailor`` system's fusion without each source
    and feature in turn (``eval.ablation``) and score it on the same users.
    ``tail_choice``: also apply the rule that picks the agent's ``tail_boost`` to the
    first ``tailor`` system's training cases (``eval.tail_choice``)."""
    from agent.data.assets import prepare_embedder
    from agent.data.catalog import Catalog
    from agent.retrieve.embeddings import SentenceEmbedder
    from agent.retrieve.index import make_client, open_collection
    from eval.experiment import evaluate_system
    from eval.protocols import make_split, sample_users
    from eval.report import git_sha, write_report

    specs = parse_systems(systems)
    if fusion_users is not None and fusion_users < 1:
        raise ConfigError(f"--fusion-users must be 1 or more, not {fusion_users}")
    t0, sha = time.perf_counter(), git_sha()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    catalog = Catalog.load(settings.data_dir())
    split = make_split(catalog, seed=seed)
    cases = sample_users(split.test, users, seed)
    log(f"{settings.dataset}: {len(split.test)} test users, evaluating {len(cases)} "
        f"(seed {seed}); tail = {len(split.tail)} items outside the 80% head")
    embedder = SentenceEmbedder(str(prepare_embedder(settings, log)))
    collection = open_collection(make_client(settings), embedder, settings.dataset)
    if backend_factory is None:
        def backend_factory(adapter):
            from dataclasses import replace

            from agent.build import make_backend

            return make_backend(replace(settings, adapter=adapter))
    built, vectors = build_systems(specs, settings, split, collection, embedder,
                                   backend_factory, log, fusion_users)
    # LLM systems cost a forward pass per user: they may run on a fixed-seed subset,
    # and every system's metrics on that same subset are reported beside its own.
    llm_cases = sample_users(cases, llm_users, seed) if llm_users else cases
    results = []
    for system in built:
        explainer = make_explainer(split.train_catalog) if system.name in (
            "hybrid", "llm-zero", "llm-few", "llm-lora") else None
        own = llm_cases if system.name.startswith("llm") else cases
        res = evaluate_system(system, own, split, vectors, explainer=explainer)
        log(f"{system.name}: ndcg@10 {res.metrics['ndcg@10']:.4f}  hr@10 {res.metrics['hr@10']:.4f}"
            f"  tail_share@10 {res.metrics['tail_share@10']:.3f}  ({res.wall_time_s:.0f}s)")
        results.append(res)
    if llm_cases is not cases:
        subset = {c.user for c in llm_cases}
        for res in results:
            rows = [v for u, v in res.per_user.items() if u in subset]
            res.subset_metrics = {k: float(sum(r[k] for r in rows) / len(rows)) for k in rows[0]}
    conversation = run_conversations(built, split, collection, embedder, conversation_users,
                                     seed, log) if conversation_users else {}
    if ablation:
        run_ablation(built, cases, log)
    if tail_choice:
        from eval.tail_choice import run_tail_choice

        system = first_tailor(built, "--tail-choice")
        system.report["tail_choice"] = run_tail_choice(system, split, settings.diversity, log)
    training = {s.name: s.report for s in built if getattr(s, "report", None)}
    return write_report(out, settings, specs, split, cases, results, seed, users,
                        time.perf_counter() - t0, conversation,
                        len(llm_cases) if llm_cases is not cases else None, sha, training)


def first_tailor(built, option: str):
    """The first ``tailor`` system among ``built``, which ``option`` needs."""
    system = next((s for s in built if s.name.startswith("tailor")), None)
    if system is None:
        raise ConfigError(f"{option} needs a tailor system among --systems")
    return system


def run_ablation(built, cases, log=print) -> None:
    """The ablation table of the first ``tailor`` system, into its training report."""
    from tqdm import tqdm

    from eval.ablation import ablate

    system = first_tailor(built, "--ablation")
    test = [system.example(c)[0] for c in tqdm(cases, desc="ablation: test candidates",
                                               unit="user", leave=False)]
    # The fusion's default config, as the system's own (train_two_stage's).
    system.report["ablation"] = ablate(system.train_examples, test,
                                       [set(c.history) for c in cases], None, log)


def make_explainer(catalog):
    """Checks the explanations the agent would show for the top 3 (rule-based ones
    here; ``TAILOR_EXPLAIN=llm`` explanations are checked in the agent itself)."""
    from agent.explain.check import check_explanation
    from agent.explain.facts import gather_facts
    from agent.explain.writer import template_explanation
    from agent.understand.linking import TitleIndex
    from eval.systems import case_state

    index = TitleIndex(list(catalog.items.values()))
    people = {p for it in catalog.items.values() for p in credits(it)}

    def explain(case, ranked):
        state = case_state(case)
        out = []
        for i in ranked[:3]:
            f = gather_facts(catalog.get(i), state, catalog.items, catalog.cowatch)
            out.append(not check_explanation(template_explanation(f), f, state, catalog.items,
                                             index, people))
        return out

    return explain
