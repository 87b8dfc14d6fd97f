"""``tailor train-cf`` and ``tailor retrain``: fit the collaborative stages (SASRec and
the learned fusion) on a dataset's interactions, and refit them after the API has logged
more (``agent.data.retrain``)."""

from __future__ import annotations

import time
from pathlib import Path

from agent.errors import ConfigError
from agent.interfaces.commands import _log
from agent.settings import Settings

REPORT_SYSTEMS = ("popularity", "itemknn", "sasrec", "tailor")


def cmd_train_cf(settings: Settings, args) -> int:
    """Train (once) the sequential model the agent retrieves with, for ``--dataset``."""
    _need_dataset(settings)
    train_collaborative(settings)
    return 0


def _need_dataset(settings: Settings) -> Path:
    folder = settings.data_dir()
    if not (folder / "items.jsonl").exists():
        raise ConfigError(f"no {settings.dataset} catalog under {folder}; run "
                          f"`tailor data --dataset {settings.dataset}` (or `tailor import`) first")
    return folder


def warm_models(settings: Settings, previous, catalog) -> tuple[list, list]:
    """The serving and shadow SASRec fitted on ``previous`` (the data before a retrain),
    one of each per sequence model the settings train, for the models of ``catalog`` to
    start from; None for one not cached, and none at all when the config changed with
    the data. Neither has seen the new models' early-stopping targets: those are each
    history's last item (the shadow's: its first held-out one), which the old models
    held out too, or new interactions."""
    from agent.models.ensemble import agent_configs
    from agent.models.sasrec import CONFIG, SASRec, model_dir
    from agent.rank.shadow import shadow_catalog, shadow_dir

    cfgs = agent_configs(settings, previous)
    if cfgs != agent_configs(settings, catalog):
        _log("the SASRec config changed with the new data: training from scratch")
        return [], []
    before = shadow_catalog(previous)

    def load(folder):
        return SASRec.load(folder) if (folder / CONFIG).is_file() else None

    return ([load(model_dir(settings.models_dir, settings.dataset, previous, c)) for c in cfgs],
            [load(shadow_dir(settings.models_dir, settings.dataset, before, c)) for c in cfgs])


def train_collaborative(settings: Settings, catalog=None, previous=None) -> None:
    """The sequence models, then the learned fusion over every source (each once: cached
    in the data home, keyed by the data and the config). ``catalog``: the one to fit on
    (default: the dataset on disk); ``previous``: the data before a retrain, whose
    sequence models the new ones start from (``warm_models``)."""
    from agent.data.assets import prepare_embedder
    from agent.data.catalog import Catalog
    from agent.models.ensemble import prepare_sequential
    from agent.rank.shadow import prepare_fusion
    from agent.retrieve.embeddings import SentenceEmbedder
    from agent.retrieve.index import make_client, open_collection

    catalog = catalog if catalog is not None else Catalog.load(settings.data_dir())
    warm = warm_models(settings, previous, catalog) if previous is not None else ([], [])
    t = time.perf_counter()
    paths = prepare_sequential(settings, catalog, log=_log, warm=warm[0])
    _log(f"sequential model{'s' if len(paths) > 1 else ''}: "
         f"{', '.join(map(str, paths))} ({time.perf_counter() - t:.0f}s)")
    t = time.perf_counter()
    embedder = SentenceEmbedder(str(prepare_embedder(settings, _log)))
    collection = open_collection(make_client(settings), embedder, settings.dataset)
    path = prepare_fusion(settings, catalog, collection, embedder, paths, log=_log,
                          warm_shadow=warm[1])
    _log(f"fusion ranker: {path} ({time.perf_counter() - t:.0f}s)")


def _report_systems(text: str) -> str:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n.split(":")[0] not in REPORT_SYSTEMS]
    if bad or not names:
        raise ConfigError(f"--systems: {', '.join(bad) or 'none given'}; the retrain report "
                          f"compares the collaborative stages: {', '.join(REPORT_SYSTEMS)}")
    return ",".join(names)


def cmd_retrain(settings: Settings, args) -> int:
    """Merge the logged interactions, report before/after, refit, then put the merge on
    disk (the old dataset and models stay in use until every step before has worked)."""
    from agent.data.assets import prepare_embedder
    from agent.data.catalog import Catalog
    from agent.data.retrain import merge_log, write_merge
    from agent.retrieve.index import make_client, open_collection, refresh_metadata

    folder = _need_dataset(settings)
    systems = _report_systems(args.systems)
    old = Catalog.load(folder)
    merge = merge_log(old, folder)
    for why in merge.skipped:
        _log(f"skipped: {why}")
    if not merge.added:
        _log(f"nothing new in {folder / 'interactions.jsonl'} ({merge.log_lines} records, all "
             "merged); making sure the models for the current data are trained")
        train_collaborative(settings, old)
        return 0
    _log(f"merging {merge.added} logged interactions ({len(merge.new_users)} new users): "
         f"{len(old.user)} -> {len(merge.catalog.user)} interactions")
    if not args.no_report:
        from eval.retrain import before_after, render, write_report

        report = before_after(settings, old, merge, systems, args.users, args.seed, _log)
        path = write_report(Path(args.out), report)
        print(render(report), end="")
        _log(f"report written to {path} and retrain.json")
    train_collaborative(settings, merge.catalog, previous=old)
    write_merge(folder, merge)
    from agent.retrieve.embeddings import SentenceEmbedder

    embedder = SentenceEmbedder(str(prepare_embedder(settings, _log)))
    changed = refresh_metadata(open_collection(make_client(settings), embedder, settings.dataset),
                               merge.catalog, Path(embedder.path).name)
    _log(f"merged into {folder}; index metadata refreshed ({changed} items' popularity or "
         "head/tail changed). Restart `tailor serve` to serve the refitted models.")
    return 0
