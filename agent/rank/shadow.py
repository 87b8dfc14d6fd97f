"""Leak-free training of the fusion, and the agent's cached fusion.

The fusion learns from each user's last ``HELD_OUT`` items, among the candidates that
sources fitted on the histories *before* those items propose (``shadow_examples``): a
shadow sequence model, co-watching and popularity that have never seen a target. At
serving time the sources are refitted on everything, as in RecTools' two-stage ranker.
``prepare_fusion`` trains the agent's fusion once and caches it in the data home.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from agent.rank.fusion import (META, Example, FusionConfig, FusionRanker, feature_names,
                               known_user_example, recall, train_fusion_pair)

HELD_OUT = 5  # each user's last items that the fusion learns to predict
KEEP = 3  # items a truncated history keeps at least


def shadow_split(sequences: dict[int, Sequence[int]], held: int = HELD_OUT, keep: int = KEEP
                 ) -> tuple[dict[int, list[int]], list[tuple[int, list[int], int]]]:
    """Each user's sequence without its last ``held`` items (at least ``keep`` are
    kept), and every held-out position as a ``(user, history, next item)`` case.

    The fusion is trained on those cases with sources fitted on the truncated
    sequences only (``shadow_examples``): several cases per user (one per held-out
    item) where a single last item gave too few groups to learn from, and no source
    has seen a target. At serving time the sources are refitted on everything, as in
    RecTools' two-stage ranker.

    >>> shadow_split({1: [1, 2, 3, 4, 5, 6], 2: [7, 8, 9]}, held=2)
    ({1: [1, 2, 3, 4], 2: [7, 8, 9]}, [(1, [1, 2, 3, 4], 5), (1, [1, 2, 3, 4, 5], 6)])
    """
    truncated, cases = {}, []
    for user, seq in sequences.items():
        seq = list(seq)
        cut = max(keep, len(seq) - held)
        truncated[user] = seq[:cut]
        cases += [(user, seq[:t], seq[t]) for t in range(cut, len(seq))]
    return truncated, cases


def first_cases(truncated: dict[int, list[int]], sequences: dict[int, Sequence[int]]
                ) -> list[tuple[list[int], int]]:
    """Each user's first held-out item after its truncated history: the early-stopping
    targets of the shadow sequence model."""
    return [(h, sequences[u][len(h)]) for u, h in truncated.items()
            if len(sequences[u]) > len(h)]


def shadow_dir(cache_dir: Path, name: str, before, cfg) -> Path:
    """Where the shadow sequence model of ``before`` (config ``cfg``) is cached."""
    from agent.models.sasrec import model_key

    return Path(cache_dir) / f"shadow-sasrec-{name}-{model_key(before, cfg)}"


def shadow_catalog(catalog):
    """``catalog`` as the agent's fusion training sees it: every history of more than
    ``KEEP`` items without its last ``HELD_OUT`` (``prepare_fusion``)."""
    from agent.data.catalog import catalog_from_histories
    from agent.models.sasrec import catalog_sequences

    sequences = {u: s for u, s in catalog_sequences(catalog).items() if len(s) > KEEP}
    truncated, _ = shadow_split(sequences)
    return catalog_from_histories(catalog, truncated, f"fusion training: last {HELD_OUT} "
                                  "items held out")


def shadow_sequential(before, truncated, sequences, cfg, cache_dir: Path | None = None,
                      name: str = "data", log=print, progress: bool = True, warm=None):
    """SASRec (config ``cfg``) trained on the truncated histories, early-stopped on each
    user's first held-out item; cached in ``cache_dir`` by data and config. ``warm``:
    the shadow model of the data before a retrain, to start from."""
    from agent.models.sasrec import CONFIG, SASRec, checkpoint_path, save_trained, train_sasrec

    folder = None
    if cache_dir is not None:
        folder = shadow_dir(cache_dir, name, before, cfg)
        if (folder / CONFIG).is_file():
            log(f"fusion: the shadow sequence model trained earlier ({folder})")
            return SASRec.load(folder)
    log("fusion: training the shadow sequence model on the histories without their "
        "held-out last items")
    valid = np.zeros(before.max_id + 1, dtype=bool)
    valid[list(before.items)] = True
    model = train_sasrec(list(truncated.values()), before.max_id + 1,
                         first_cases(truncated, sequences), cfg, valid, log, progress,
                         folder and checkpoint_path(folder), warm)
    if folder is not None:
        save_trained(model, folder)
    return model


def shadow_models(before, truncated, sequences, cfgs, cache_dir: Path | None = None,
                  name: str = "data", log=print, progress: bool = True, warm=()):
    """The shadow of a serving sequence model whose trainings have the configs ``cfgs``
    (one, or an ensemble's members: ``agent.models.ensemble``), each trained by
    ``shadow_sequential`` (from its ``warm`` model when given)."""
    from agent.models.ensemble import one_or_ensemble

    warm = list(warm) + [None] * (len(cfgs) - len(warm))
    return one_or_ensemble([shadow_sequential(before, truncated, sequences, cfg, cache_dir,
                                              name, log, progress, start)
                            for cfg, start in zip(cfgs, warm)])


def shadow_examples(retriever, sequences: dict[int, Sequence[int]], base_catalog,
                    sequential_for, held: int = HELD_OUT, pool: int = 50, log=print,
                    progress: bool = True, users=None
                    ) -> tuple[list[Example], list[dict], list[bool]]:
    """The fusion's training examples: for every held-out position of ``sequences``, the
    candidates that sources fitted on the truncated histories propose.

    ``retriever``: the serving retriever, whose Chroma collection and embedder are
    reused (they read item text, not interactions). ``sequential_for(before, truncated,
    sequences)``: the sequence model fitted on the truncated histories (None: none).
    ``users``: only these users' held-out positions become examples (None: everyone's);
    the shadow sources are still fitted on every user's truncated history.
    The recent popularity of a user's cases is counted at the end of the truncated
    history, as a test case's is at the end of the training one (``make_example``).
    Returns the examples, each one's source lists, and whether its target is the
    user's last item."""
    from tqdm import tqdm

    from agent.data.catalog import catalog_from_histories
    from agent.retrieve.sources import HybridRetriever

    truncated, cases = shadow_split(sequences, held)
    if users is not None:
        cases = [c for c in cases if c[0] in users]
    before = catalog_from_histories(base_catalog, truncated,
                                    f"fusion training: last {held} items held out")
    shadow = HybridRetriever(retriever.collection, retriever.embedder, before,
                             people=retriever.people, reference=retriever.reference,
                             sequential=sequential_for(before, truncated, sequences))
    examples, lists, last = [], [], []
    for user, history, target in tqdm(cases, desc="fusion: training candidates", unit="case",
                                disable=not progress, leave=False):
        ex, lst = known_user_example(shadow, history, target, before, pool,
                                     when=before.last_time(user))
        ex.user = user
        examples.append(ex)
        lists.append(lst)
        last.append(len(history) + 1 == len(sequences[user]))
    return examples, lists, last


def sequential_key(sequential_dirs) -> str:
    """The fusion's name for the sequence models it was fitted over: the folder's name
    for one model (as before ensembles), the names joined by "+" for several."""
    dirs = [sequential_dirs] if isinstance(sequential_dirs, Path) else list(sequential_dirs)
    return "+".join(d.name for d in dirs)


def fusion_dir(models_dir: Path, dataset: str, sequential_key: str,
               cfg: FusionConfig) -> Path:
    import hashlib

    key = hashlib.sha256(json.dumps([sequential_key, asdict(cfg), feature_names()],
                                    sort_keys=True).encode()).hexdigest()[:12]
    return models_dir / f"fusion-{dataset}-{key}"


def prepare_fusion(settings, catalog, collection, embedder, sequential_dirs,
                   log=print, cfg: FusionConfig | None = None, progress: bool = True,
                   warm_shadow=()) -> Path:
    """The cached fusion for ``settings.dataset`` over the sequence models saved in
    ``sequential_dirs`` (one folder, or an ensemble's), trained now if missing
    (``shadow_examples``: shadow sequence models of the same configs, from the
    ``warm_shadow`` models if given, are trained on histories without their last items)."""
    from agent.models.sasrec import CONFIG, SASRecConfig, catalog_sequences
    from agent.retrieve.sources import HybridRetriever

    cfg = cfg or FusionConfig()
    key = sequential_key(sequential_dirs)
    folder = fusion_dir(settings.models_dir, settings.dataset, key, cfg)
    if (folder / META).is_file():
        return folder
    log(f"training the fusion ranker for {settings.dataset} (once; cached in {folder})")
    dirs = [sequential_dirs] if isinstance(sequential_dirs, Path) else list(sequential_dirs)
    seq_cfgs = [SASRecConfig(**json.loads((d / CONFIG).read_text())["config"]) for d in dirs]

    def sequential_for(before, truncated, sequences):
        return shadow_models(before, truncated, sequences, seq_cfgs, settings.models_dir,
                             settings.dataset, log, progress, warm_shadow)

    sequences = {u: s for u, s in catalog_sequences(catalog).items() if len(s) > KEEP}
    examples, _, _ = shadow_examples(HybridRetriever(collection, embedder, catalog), sequences,
                                     catalog, sequential_for, log=log, progress=progress)
    fusion = train_fusion_pair(examples, feature_names(), cfg, log)
    fusion.info.update(sequential=key, recall_union=recall(examples),
                       held_out=HELD_OUT)
    tmp = folder.with_name(folder.name + ".tmp")
    fusion.save(tmp)
    tmp.rename(folder)  # whole or absent
    return folder


def find_fusion(settings, sequential_dirs, cfg: FusionConfig | None = None
                ) -> FusionRanker | None:
    """The cached fusion over those sequence models (one folder or an ensemble's), or
    None when none was trained."""
    if not sequential_dirs:
        return None
    folder = fusion_dir(settings.models_dir, settings.dataset,
                        sequential_key(sequential_dirs), cfg or FusionConfig())
    return FusionRanker.load(folder) if (folder / META).is_file() else None
