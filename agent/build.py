"""Assemble a ``Recommender`` from settings: the one place that wires parts together."""

from __future__ import annotations

from agent.errors import AssetError
from agent.settings import Settings


def build_recommender(settings: Settings, backend=None, log=print):
    """Load the catalog, open the index and the model, and return a ``Recommender``.

    Args:
        backend: a ``ChatBackend`` to use instead of loading the configured model.
    """
    from agent.assets import prepare_embedder
    from agent.catalog import Catalog
    from agent.embeddings import SentenceEmbedder
    from agent.index import make_client, open_collection
    from agent.linking import TitleIndex
    from agent.ranking import VerbalizerRanker
    from agent.recommender import Recommender
    from agent.retrieval import HybridRetriever

    catalog = Catalog.load(settings.data_dir())
    embedder = SentenceEmbedder(str(prepare_embedder(settings, log)))
    collection = open_collection(make_client(settings), embedder, settings.dataset)
    if backend is None:
        backend = load_backend(settings)
    ranker = VerbalizerRanker(backend, catalog, n_llm=settings.llm_candidates,
                              weight=settings.llm_weight, few_shot=settings.rank_mode == "few")
    return Recommender(catalog, TitleIndex(list(catalog.items.values())),
                       HybridRetriever(collection, embedder, catalog), ranker, backend,
                       n_candidates=settings.candidates, top_k=settings.top_k,
                       explain=settings.explain)


def load_backend(settings: Settings):
    """The configured chat model (in-process)."""
    from agent.assets import DEFAULT_MODEL, verify_manifest
    from agent.llm.local import LocalBackend

    if settings.model == DEFAULT_MODEL:
        path = settings.models_dir / DEFAULT_MODEL
        if not verify_manifest(path):
            raise AssetError(f"the model in {path} is missing or damaged; run `tailor assets`")
        model = str(path)
    else:
        model = settings.model
    return LocalBackend(model, threads=settings.threads)
