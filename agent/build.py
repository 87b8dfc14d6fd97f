"""Assemble a ``Recommender`` from settings: the one place that wires parts together."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.errors import AssetError
from agent.settings import Settings


def model_location(settings: Settings) -> str:
    """The configured chat model as a local folder (bundled, verified) or a Hugging Face id."""
    from agent.data.assets import DEFAULT_MODEL, verify_manifest

    if settings.model != DEFAULT_MODEL:
        return settings.model
    path = settings.models_dir / DEFAULT_MODEL
    if not verify_manifest(path):
        raise AssetError(f"the model in {path} is missing or damaged; run `tailor assets`")
    return str(path)


def adapter_location(settings: Settings) -> Path | None:
    """The folder of ``settings.adapter`` under the adapters dir, or None when unset."""
    if not settings.adapter:
        return None
    path = settings.adapters_dir / settings.adapter
    if not (path / "adapter_config.json").is_file():
        raise AssetError(f"no LoRA adapter named {settings.adapter!r}: {path} has no "
                         "adapter_config.json")
    return path


def ranker_options(settings: Settings) -> dict:
    """``VerbalizerRanker`` keyword arguments. A fine-tuned adapter brings its own (from
    its ``tailor.json``): the zero-shot prompt it was trained on, no calibration (it
    learned the letters' meaning) and the fusion weight tuned on validation users."""
    options = {"n_llm": settings.llm_candidates, "weight": settings.llm_weight,
               "few_shot": settings.rank_mode == "few", "calibrate": True}
    meta = settings.adapters_dir / settings.adapter / "tailor.json" if settings.adapter else None
    if meta is not None and meta.is_file():
        import json

        tuned = json.loads(meta.read_text())
        options.update(n_llm=min(tuned["candidates"], settings.candidates),
                       weight=tuned["fusion_weight"], few_shot=tuned["few_shot"],
                       calibrate=tuned["calibrate"])
    return options


def make_backend(settings: Settings):
    """The ``ChatBackend`` the settings ask for: a server (``TAILOR_LLM_URL``) or in-process."""
    if settings.llm_url:
        from agent.llm.openai_backend import OpenAIBackend

        # A served adapter is asked for by its own name (vLLM's --lora-modules NAME=PATH).
        return OpenAIBackend(settings.llm_url, settings.adapter or settings.llm_model,
                             timeout=settings.llm_timeout)
    from agent.llm.local import LocalBackend

    adapter = adapter_location(settings)
    return LocalBackend(model_location(settings), threads=settings.threads,
                        adapter_path=str(adapter) if adapter else None, quant=settings.quant,
                        pack=bool(settings.pack_weights))


def reference_films(settings: Settings, catalog, log=print):
    """The reference film table for titles outside the catalog, or None (with a note)
    when it cannot be had: the turn then names such titles as not found."""
    from agent.domain.movielens.loaders import film_db_path
    from agent.domain.movielens.reference import ReferenceFilms

    roles = catalog.schema.roles
    genres = {g for it in catalog.items.values() for g in roles.genres_of(it)}
    try:
        return ReferenceFilms.from_film_db(film_db_path(settings.downloads_dir, log), genres)
    except (OSError, AssetError, sqlite3.Error) as e:
        log(f"note: no reference film table ({e}); titles outside the catalog are only "
            "named back as not found")
        return None


def build_recommender(settings: Settings, backend=None, log=print):
    """Load the catalog, open the index and the model, and return a ``Recommender``.

    Args:
        backend: a ``ChatBackend`` to use instead of the one the settings configure.
    """
    from agent.data.assets import prepare_embedder
    from agent.data.catalog import Catalog
    from agent.models.ensemble import find_sequential, sequential_dirs
    from agent.rank.shadow import find_fusion
    from agent.rank.rerank import TailDiversityReranker
    from agent.rank.verbalizer import VerbalizerRanker
    from agent.recommender import Recommender
    from agent.retrieve.embeddings import SentenceEmbedder
    from agent.retrieve.index import make_client, open_collection
    from agent.retrieve.sources import HybridRetriever
    from agent.understand.linking import TitleIndex
    from agent.understand.people import PeopleIndex
    from agent.understand.vocabulary import load_vocabulary

    catalog = Catalog.load(settings.data_dir())
    embedder = SentenceEmbedder(str(prepare_embedder(settings, log)))
    collection = open_collection(make_client(settings), embedder, settings.dataset)
    if backend is None:
        backend = make_backend(settings)
    roles = catalog.schema.roles
    films = roles.films
    options = ranker_options(settings)
    if not films and not settings.adapter:
        # The catalog prompt (agent.rank.catalog_prompt) works, but zero-/few-shot the
        # small default model did not beat retrieval order on the generated shop
        # (README): an imported catalog uses the LLM to rank once an adapter is trained.
        log(f"note: {settings.dataset} is ranked by its candidate sources (the LLM ranks "
            "an imported catalog with an adapter: `tailor finetune`, then --adapter)")
        options["n_llm"] = 0
    ranker = VerbalizerRanker(backend, catalog, **options)
    title_index = TitleIndex(list(catalog.items.values()))
    people = PeopleIndex(list(catalog.items.values()), load_vocabulary().person_cues, roles)
    reference = reference_films(settings, catalog, log) if films else None
    extractor = None
    if settings.state_llm != "off":
        from agent.understand.extract import StateExtractor, state_backend

        # A state adapter runs on its own copy of the small model; without one the
        # configured backend fills the form zero-shot.
        model = state_backend(settings, settings.state_adapter) if settings.state_adapter \
            else backend
        extractor = StateExtractor(model, title_index, settings.state_llm, people, reference,
                                   catalog.facet_values.get(roles.genre, ()))
    guesser = None
    if settings.title_llm == "on" and films:
        from agent.domain.movielens.reference import ReferenceFilms
        from agent.understand.title_guess import TitleGuesser

        guesser = TitleGuesser(backend, {g for it in catalog.items.values()
                                         for g in roles.genres_of(it)})
        reference = reference if reference is not None else ReferenceFilms({})
    sequential = find_sequential(settings, catalog)
    fusion = None
    if sequential is None:
        log("note: no sequential model for this catalog yet (`tailor train-cf` trains it); "
            "recommending without it, candidates fused by reciprocal rank")
    else:
        fusion = find_fusion(settings, sequential_dirs(settings, catalog))
        if fusion is None:
            log("note: no learned fusion for this catalog yet (`tailor train-cf` trains it); "
                "candidates fused by reciprocal rank")
        else:
            catalog.ease  # the fusion reads EASE's scores: fitted now, not in the first turn
    return Recommender(catalog, title_index,
                       HybridRetriever(collection, embedder, catalog, people, reference,
                                       sequential, fusion),
                       ranker, backend,
                       n_candidates=settings.candidates, top_k=settings.top_k,
                       explain=settings.explain, extractor=extractor, people=people,
                       reference=reference, guesser=guesser,
                       reranker=TailDiversityReranker(catalog, settings.tail_boost,
                                                      settings.diversity,
                                                      bool(settings.tail_floor)))

