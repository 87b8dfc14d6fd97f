"""``tailor finetune``: examples -> LoRA training -> an adapter the agent loads by name."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from agent.errors import ConfigError
from finetune.config import FinetuneConfig
from finetune.train import META_FILE

HEURISTICS = ("retriever", "reverse", "least_popular")


def open_retrieval(settings, log):
    """The agent's embedder and Chroma collection (the retriever is rebuilt per catalog)."""
    from agent.data.assets import prepare_embedder
    from agent.retrieve.embeddings import SentenceEmbedder
    from agent.retrieve.index import make_client, open_collection

    embedder = SentenceEmbedder(str(prepare_embedder(settings, log)))
    return open_collection(make_client(settings), embedder, settings.dataset), embedder


def prompt_counter(model: str):
    """``messages -> prompt tokens`` with the base model's tokenizer and chat template."""
    from transformers import AutoTokenizer

    from finetune.train import encode

    tok = AutoTokenizer.from_pretrained(model)
    return lambda messages: len(encode(tok, messages))


def prepare_run(settings, config: FinetuneConfig, fresh: bool) -> Path:
    """Threads and seed set, the checkpoint checked: the adapter's output folder."""
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(config.seed)
    out = settings.adapters_dir / config.name
    _check_checkpoint(out, config, fresh)
    return out


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def start_lora(settings, config: FinetuneConfig, out: Path, n_train: int, unit: str, log):
    """The base model with a fresh LoRA attached, its config saved beside the checkpoint.
    Returns ``(base location, model, tokenizer)``."""
    from agent.build import model_location
    from finetune.train import attach_lora, load_base

    base = config.base_model or model_location(settings)
    model, tokenizer = load_base(base, config.quant)
    model = attach_lora(model, config)
    (out / "checkpoint").mkdir(parents=True, exist_ok=True)
    (out / "checkpoint" / "config.json").write_text(json.dumps(config.to_json(), indent=1))
    log(f"training {trainable_parameters(model):,} LoRA parameters on {n_train} {unit} "
        f"({config.epochs:g} epochs, budget {config.max_minutes:g} min)")
    return base, model, tokenizer


def build_example_sets(settings, config: FinetuneConfig, log, progress: bool = True,
                       include_feedback: bool = False):
    """Training and (honest) validation examples, cached under the data home by the
    hash of what they depend on. Returns ``(train, valid, split, cache_dir)``.

    ``include_feedback`` adds each stored session's likes (``tailor serve``, the UI)
    as one more user history to learn from; validation stays MovieLens users only."""
    from agent.build import model_location
    from agent.data.catalog import Catalog
    from agent.retrieve.sources import HybridRetriever
    from eval.protocols import leave_one_out, make_split
    from finetune import data as D

    if include_feedback and config.candidates_from != "hybrid":
        raise ConfigError("--include-feedback needs candidates_from: hybrid (the fusion's "
                          "cases are the evaluation split's users)")
    catalog = Catalog.load(settings.data_dir())
    split = make_split(catalog, seed=config.seed)
    collection, embedder = open_retrieval(settings, log)
    key = config.data_key()
    source = catalog
    if include_feedback:
        from agent.interfaces.sessions import open_store

        feedback = open_store(settings).feedback()
        source = D.with_feedback(catalog, feedback)
        log(f"including feedback: {source.meta.get('feedback_sessions', 0)} sessions with likes")
        key += "-fb" + hashlib.sha256(json.dumps(feedback).encode()).hexdigest()[:8]
    cache = settings.home / "finetune" / f"{settings.dataset}-{key}"
    if (cache / "train.jsonl").exists() and (cache / "valid.jsonl").exists():
        log(f"using cached examples in {cache}")
        return _subset(D.load_examples(cache / "train.jsonl"),
                       D.load_examples(cache / "valid.jsonl"), split, config, cache)
    t = time.perf_counter()
    if config.candidates_from == "fusion":
        train, valid = fusion_example_sets(settings, config, split, collection, embedder, log)
        _, _, test_items = leave_one_out(catalog, D.MIN_HISTORY)
        D.assert_no_heldout_leak(train + valid, {}, test_items)
    else:
        count = prompt_counter(config.base_model or model_location(settings))
        train = D.training_examples(source, lambda c: HybridRetriever(collection, embedder, c),
                                    config.candidates, config.snapshots, config.chat_share,
                                    config.seed, progress=progress, count_tokens=count)
        valid = D.heldout_examples(split, split.valid, HybridRetriever(collection, embedder,
                                                                       split.train_catalog),
                                   config.candidates, count_tokens=count)
        _, valid_items, test_items = leave_one_out(catalog, D.MIN_HISTORY)
        D.assert_no_heldout_leak(train, valid_items, test_items)
    tmp = cache.with_name(cache.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    D.save_examples(tmp / "train.jsonl", train)
    D.save_examples(tmp / "valid.jsonl", valid)
    shutil.rmtree(cache, ignore_errors=True)  # a folder an older run left incomplete
    tmp.rename(cache)  # whole or absent
    log(f"built {len(train)} training and {len(valid)} validation examples in "
        f"{time.perf_counter() - t:.0f}s ({cache})")
    return _subset(train, valid, split, config, cache)


def _subset(train, valid, split, config: FinetuneConfig, cache: Path):
    """``(train, valid, split, cache)``, validation cut to ``config.val_users`` users."""
    from eval.protocols import sample_users

    if config.val_users:
        valid = [ex for ex in valid if ex.user in
                 {c.user for c in sample_users(split.valid, config.val_users, config.seed)}]
    return train, valid, split, cache


def fusion_example_sets(settings, config: FinetuneConfig, split, collection, embedder, log):
    """``candidates_from: fusion``: the ``tailor`` evaluation system (its SASRec and shadow
    models cached in the data home) and its cases' out-of-fold top ``candidates``
    (``finetune.fusion_data``). Returns ``(train, valid)``."""
    from agent.build import model_location
    from eval.llm_feature import CASES
    from eval.run import build_systems
    from finetune.fusion_data import fusion_examples

    def no_llm(adapter):
        raise RuntimeError("the tailor system needs no LLM")

    (system,), _ = build_systems([("tailor", 0.0)], settings, split, collection, embedder,
                                 no_llm, log)
    count = prompt_counter(config.base_model or model_location(settings))
    return fusion_examples(system, split, config.candidates, config.seed, CASES, count, log)


def heuristics_table(train, valid) -> dict:
    """NDCG@10 of trivial orderings against chance: a leak would show as a heuristic
    that beats chance for no reason a user would recognise."""
    from finetune import data as D

    return {name: {"chance": D.mean_chance(exs),
                   **{h: D.heuristic_ndcg(exs, h) for h in HEURISTICS}}
            for name, exs in (("train", train), ("valid", valid))}


def run_finetune(settings, config: FinetuneConfig, log=print, fresh: bool = False,
                 progress: bool = True, include_feedback: bool = False) -> dict:
    """Build examples, train, and write ``adapters/<name>`` with its metadata (the state
    extractor's for ``config.task == "state"``)."""
    if config.task == "state":
        return run_state_finetune(settings, config, log, fresh, progress)

    from agent.rank.verbalizer import RANK_PROMPTS
    from finetune.data import examples_hash
    from finetune.train import train
    from prompts import prompt_hashes

    t0 = time.perf_counter()
    out = prepare_run(settings, config, fresh)
    train_set, val_set, _, cache = build_example_sets(settings, config, log, progress,
                                                      include_feedback)
    if not train_set or not val_set:
        raise ConfigError("no training or validation examples: the retriever found no targets")
    heuristics = heuristics_table(train_set, val_set)
    log("NDCG@10 of trivial orderings (must not beat chance): " + json.dumps(
        {k: {h: round(v, 3) for h, v in row.items()} for k, row in heuristics.items()}))
    base, model, tokenizer = start_lora(settings, config, out, len(train_set), "examples", log)
    state = train(model, tokenizer, config, train_set, val_set, out, log, progress)
    if state.best is None:
        raise ConfigError("no adapter was saved: training stopped before the first validation")
    meta = {
        "name": config.name, "base_model": settings.model if not config.base_model else base,
        "base_model_path": base, "dataset": settings.dataset, "quant": config.quant,
        "candidates": config.candidates, "few_shot": False, "calibrate": False,
        "fusion_weight": state.best["fusion_weight"],
        "data": {"cache": str(cache), "train_examples": len(train_set),
                 "include_feedback": include_feedback,
                 "valid_examples": len(val_set), "train_hash": examples_hash(train_set)},
        "prompt_hashes": prompt_hashes(RANK_PROMPTS), "config": config.to_json(),
        "heuristics_ndcg@10": heuristics, "trainable_parameters": trainable_parameters(model),
        "best": state.best, "learning_curve": [{k: v for k, v in p.items() if k != "validation"}
                                               for p in state.curve],
        "zero_shot_validation": state.curve[0]["validation"],
        "train_minutes": round(state.minutes, 1),
        "wall_minutes": round((time.perf_counter() - t0) / 60, 1),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    plot_curve(meta, out / "learning_curve.png")
    log(f"adapter {config.name!r} saved in {out}: validation NDCG@10 LLM-only "
        f"{state.best['val_llm_ndcg@10']:.4f}, fused (w={meta['fusion_weight']:g}) "
        f"{state.best['validation']['fused'][str(meta['fusion_weight'])]['ndcg@10']:.4f}, "
        f"retriever {state.best['val_retriever_ndcg@10']:.4f}; use it with TAILOR_ADAPTER={config.name}")
    return meta


def _check_checkpoint(out: Path, config: FinetuneConfig, fresh: bool) -> None:
    ckpt = out / "checkpoint"
    if fresh and out.exists():
        shutil.rmtree(out)
    elif (ckpt / "config.json").exists():
        saved = json.loads((ckpt / "config.json").read_text())
        if saved != json.loads(json.dumps(config.to_json())):
            raise ConfigError(f"{ckpt} holds a run with another config; pass --fresh to start "
                              "over or --name to train a new adapter")


def plot_curve(meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = meta["learning_curve"]
    x = [p["examples"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, [p["val_llm_ndcg@10"] for p in curve], marker="o", label="LoRA, LLM only")
    ax.axhline(curve[0]["val_retriever_ndcg@10"], color="gray", ls="--", label="retriever order")
    ax.axhline(meta["heuristics_ndcg@10"]["valid"]["chance"], color="gray", ls=":", label="chance")
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("validation NDCG@10 (honest subset)")
    ax.set_title(f"{meta['name']}: learning curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_state_examples(settings, config: FinetuneConfig, log):
    """Synthetic state examples (``finetune.state_data``) from the catalog, cached under
    the data home; validation asks about titles and people training never saw.
    Returns ``(train, valid, cache_dir)``."""
    from agent.build import reference_films
    from agent.data.catalog import Catalog
    from agent.domain.movielens.loaders import film_db_path
    from finetune import state_data as S
    from finetune import state_sources as sources

    cache = settings.home / "finetune" / f"{settings.dataset}-{config.data_key()}"
    if (cache / "train.jsonl").exists() and (cache / "valid.jsonl").exists():
        log(f"using cached examples in {cache}")
        return S.load_examples(cache / "train.jsonl"), S.load_examples(cache / "valid.jsonl"), cache
    catalog = Catalog.load(settings.data_dir())
    items = list(catalog.items.values())
    reference = reference_films(settings, catalog, log)
    src = sources.catalog_sources(items, reference=reference)
    if reference is not None:
        outside = sources.outside_titles(film_db_path(settings.downloads_dir, log),
                                         src.title_index)
        src = sources.catalog_sources(items, outside, reference)
    train_src, val_src = sources.split_sources(src, 0.1, config.seed)
    train = S.synthesise(train_src, config.state_examples, config.seed)
    valid = S.synthesise(val_src, config.state_val_examples, config.seed + 1)
    cache.mkdir(parents=True, exist_ok=True)
    S.save_examples(cache / "train.jsonl", train)
    S.save_examples(cache / "valid.jsonl", valid)
    log(f"synthesised {len(train)} training and {len(valid)} validation requests ({cache}); "
        f"skills: {S.skill_counts(train)}")
    return train, valid, cache


def run_state_finetune(settings, config: FinetuneConfig, log=print, fresh: bool = False,
                       progress: bool = True) -> dict:
    """Synthesise requests, train the state adapter, write ``adapters/<name>`` with its
    ``tailor.json`` (``"task": "state"``; load it with
    ``agent.understand.extract.state_backend``)."""
    from agent.understand.extract import STATE_PROMPTS, STATE_TASK, state_schema
    from finetune.state_data import skill_counts
    from finetune.state_train import examples_hash, train_state
    from prompts import prompt_hashes

    t0 = time.perf_counter()
    out = prepare_run(settings, config, fresh)
    train_set, val_set, cache = build_state_examples(settings, config, log)
    base, model, tokenizer = start_lora(settings, config, out, len(train_set), "requests", log)
    state = train_state(model, tokenizer, config, train_set, val_set, out, log, progress)
    if state.best is None:
        raise ConfigError("no adapter was saved: training stopped before the first validation")
    meta = {
        "name": config.name, "task": STATE_TASK,
        "base_model": settings.model if not config.base_model else base,
        "base_model_path": base, "dataset": settings.dataset, "quant": config.quant,
        "data": {"cache": str(cache), "train_examples": len(train_set),
                 "valid_examples": len(val_set), "train_hash": examples_hash(train_set),
                 "skills": skill_counts(train_set)},
        "prompt_hashes": prompt_hashes(STATE_PROMPTS),
        "schema_sha256": hashlib.sha256(json.dumps(state_schema()).encode()).hexdigest(),
        "config": config.to_json(), "trainable_parameters": trainable_parameters(model),
        "best": state.best,
        "learning_curve": state.curve, "train_minutes": round(state.minutes, 1),
        "wall_minutes": round((time.perf_counter() - t0) / 60, 1),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    log(f"state adapter {config.name!r} saved in {out}: validation exact forms "
        f"{state.best['val_exact']:.3f}, loss {state.best['val_loss']:.3f} "
        f"({meta['wall_minutes']:g} min in all)")
    return meta
