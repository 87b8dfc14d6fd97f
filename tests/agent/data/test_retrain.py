"""``tailor retrain``'s merge of the API's interaction log, and its report's split.

The merge: every logged record lands once (a second merge adds nothing), new customers
get new ids, popularity and the head/tail split are recounted, items added online are
folded into items.jsonl, the index metadata follows in place. The report: "before" and
"after" are scored on the same test cases and neither trains on a test target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.data.catalog import Catalog
from agent.data.live import INTERACTIONS, LiveCatalog, append_record
from agent.data.retrain import merge_log, merged_lines, write_merge
from agent.retrieve.index import build_index, refresh_metadata
from eval.protocols import make_split
from eval.retrain import before_split, render
from tests.agent.data.test_import import _make_shop
from tests.agent.interfaces.test_catalog_api import live_shop


@pytest.fixture
def shop(tmp_path):
    live, client = live_shop(tmp_path, n_products=60, users=80, interactions=600)
    return live, client, live.embedder


def _log_some(live, skus, users=("newcomer", "c0001"), t0=2_000_000_000):
    for k, sku in enumerate(skus):
        live.add_interaction(users[k % len(users)], sku, t0 + k)


def test_a_merge_adds_every_logged_record_once(shop):
    live, _, _ = shop
    folder, old = live.folder, live.catalog
    skus = [it.external_id for it in sorted(old.items.values(), key=lambda i: i.popularity)[:3]]
    _log_some(live, skus * 2)  # six records: the three least-sold items, twice each
    merge = merge_log(old, folder)
    assert merge.added == 6 and merge.log_lines == 6 and not merge.skipped
    assert len(merge.catalog.user) == len(old.user) + 6
    assert [u for u, _ in merge.new_users] == ["newcomer"]
    for sku in skus:
        item = live.item_id(sku)
        assert merge.catalog.items[item].popularity == old.items[item].popularity + 2
    assert len(old.user) == int(json.loads((folder / "meta.json").read_text())["interactions"])
    write_merge(folder, merge)
    again = Catalog.load(folder)
    assert len(again.user) == len(old.user) + 6 and merged_lines(folder) == 6
    assert json.loads((folder / "meta.json").read_text())["interactions"] == len(again.user)
    assert again.items[live.item_id(skus[0])].popularity == old.items[
        live.item_id(skus[0])].popularity + 2
    users = [json.loads(x) for x in (folder / "users.jsonl").read_text().splitlines()]
    newcomer = next(u for u in users if u["external_id"] == "newcomer")
    assert newcomer["id"] == dict(merge.new_users)["newcomer"]
    assert set(again.user[again.item == live.item_id(skus[0])].tolist()) >= {newcomer["id"]}
    assert merge_log(again, folder).added == 0  # nothing is merged twice
    _log_some(live, skus[:1], users=("newcomer",), t0=2_100_000_000)
    later = merge_log(again, folder)
    assert later.added == 1 and not later.new_users  # the newcomer keeps its id


def test_an_item_added_online_is_folded_in_with_its_sales(shop):
    live, _, _ = shop
    item, _ = live.upsert("SKU-NEW", {"name": "Muji Studio red cashmere scarf",
                                      "category": "scarf", "brand": "Muji", "colour": "red",
                                      "material": "cashmere", "price": 15.5,
                                      "description": "A red cashmere scarf."})
    _log_some(live, ["SKU-NEW"] * 3, users=("a", "b", "c"))
    merge = merge_log(live.catalog, live.folder)
    write_merge(live.folder, merge)
    rows = [json.loads(x) for x in (live.folder / "items.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r.get("external_id") == "SKU-NEW")
    assert row["id"] == item.id and row["popularity"] == 3
    assert Catalog.load(live.folder).items[item.id].popularity == 3


def test_a_record_for_an_unknown_item_is_skipped_and_named(shop):
    live, _, _ = shop
    append_record(live.folder / INTERACTIONS, {"user": "x", "item": "NOPE", "rating": None,
                                               "timestamp": 2_000_000_000})
    merge = merge_log(live.catalog, live.folder)
    assert merge.added == 0 and "no item 'NOPE'" in merge.skipped[0]


def test_a_rating_less_record_counts_as_an_average_rating(shop):
    live, _, _ = shop
    old = live.catalog
    old.rating = np.full(len(old.user), 4.0, dtype=np.float32)  # as if rated 4 throughout
    _log_some(live, [next(iter(old.items.values())).external_id])
    assert merge_log(old, live.folder).catalog.rating[-1] == pytest.approx(4.0)


def test_the_index_metadata_is_refreshed_in_place(shop):
    live, client, emb = shop
    sku = min(live.catalog.items.values(), key=lambda i: i.popularity).external_id
    _log_some(live, [sku] * 40, users=tuple(f"u{k}" for k in range(40)))
    merge = merge_log(live.catalog, live.folder)
    write_merge(live.folder, merge)
    item = live.item_id(sku)
    assert item in merge.catalog.head and item not in live.catalog.head
    assert refresh_metadata(live.collection, merge.catalog, Path(emb.path).name) >= 1
    meta = live.collection.get(ids=[str(item)], include=["metadatas"])["metadatas"][0]
    assert meta["bucket"] == "head" and meta["popularity"] == merge.catalog.items[item].popularity
    # the stored fingerprint is the one a full build would compute: no rebuild follows
    info = build_index(client, Catalog.load(live.folder), emb, "shop", log=lambda m: None)
    assert info["rebuilt"] is False


def test_the_report_split_keeps_test_targets_out_of_both_trainings(shop):
    live, _, _ = shop
    old = live.catalog
    skus = [it.external_id for it in old.items.values()][:8]
    _log_some(live, skus, users=("c0001", "c0002", "newcomer"))
    merge = merge_log(old, live.folder)
    after = make_split(merge.catalog)
    before = before_split(after, old)
    assert before.test == after.test  # the same cases, the same histories
    old_pairs = set(zip(old.user.tolist(), old.item.tolist()))
    for split in (before, after):
        trained = set(zip(split.train_catalog.user.tolist(), split.train_catalog.item.tolist()))
        assert not trained & {(c.user, c.target) for c in split.test}
        assert all(set(c.history) <= {i for u, i in trained if u == c.user}
                   for c in split.valid)
    new_pairs = {(c.user, i) for c in before.valid for i in (*c.history, c.target)}
    assert new_pairs <= old_pairs  # before sees nothing the log added


def test_the_report_renders_every_system_before_and_after():
    cell = {"ndcg@10": 0.1, "hr@10": 0.2, "recall@20": 0.3}
    report = {"dataset": "shop", "added_interactions": 5, "new_users": 1, "test_users": 9,
              "logged_users": 2, "systems": {"sasrec": {
                  "before": {"all": cell, "logged_users": cell},
                  "after": {"all": dict(cell, **{"ndcg@10": 0.15}), "logged_users": cell},
                  "change_ndcg@10": {"all": {"mean": 0.05, "low": -0.01, "high": 0.11},
                                     "logged_users": {"mean": 0.0, "low": 0.0, "high": 0.0}}}}}
    text = render(report)
    assert "| sasrec | all | 0.1000 | 0.1500 |" in text and "with logged" in text
    assert "+0.0500 (-0.0100 to +0.1100) |" in text


@pytest.mark.assets
def test_tailor_retrain_changes_nothing_until_the_refit_has_worked(real_settings, tmp_path,
                                                                   monkeypatch, capsys):
    """The command's order: a refit that fails leaves the dataset as it was (the log
    still unmerged); one that works is followed by the merge on disk and an index whose
    metadata is current (a later `tailor index` has nothing to rebuild)."""
    from agent.interfaces import training
    from agent.interfaces.cli import main

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for entry in (real_settings.home / "models").iterdir():
        (home / "models" / entry.name).symlink_to(entry)
    monkeypatch.setenv("TAILOR_HOME", str(home))
    files = _make_shop()(tmp_path / "files", n_products=60, users=80, interactions=600)
    assert main(["import", "shop", "--items", str(files["items"]),
                 "--interactions", str(files["interactions"])]) == 0
    assert main(["index", "--dataset", "shop"]) == 0
    folder = home / "data" / "shop"
    live = LiveCatalog(Catalog.load(folder), folder)
    _log_some(live, ["SKU-00001"] * 30, users=tuple(f"new{k}" for k in range(30)))
    before = (folder / "interactions.npz").read_bytes()

    def broken(settings, catalog=None, previous=None):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(training, "train_collaborative", broken)
    with pytest.raises(RuntimeError):
        main(["retrain", "--dataset", "shop", "--no-report"])
    assert (folder / "interactions.npz").read_bytes() == before and merged_lines(folder) == 0
    fitted = []
    monkeypatch.setattr(training, "train_collaborative", lambda settings, catalog=None,
                        previous=None: fitted.append((len(catalog.user),
                                                      previous and len(previous.user))))
    assert main(["retrain", "--dataset", "shop", "--no-report"]) == 0
    # the refit starts from the models of the data before (training.warm_models)
    assert fitted == [(len(live.catalog.user) + 30, len(live.catalog.user))]
    assert merged_lines(folder) == 30
    capsys.readouterr()
    assert main(["index", "--dataset", "shop"]) == 0
    assert "is up to date" in capsys.readouterr().err
    assert main(["retrain", "--dataset", "shop", "--no-report"]) == 0  # nothing new
    assert "nothing new" in capsys.readouterr().err and merged_lines(folder) == 30


def test_a_retrain_starts_from_the_sequence_models_fitted_before(tmp_path):
    """``tailor retrain``'s models start from the serving and shadow SASRec of the data
    before the merge (found by that data's keys); none cached, or another shape: none."""
    from agent.interfaces.training import warm_models
    from agent.models.sasrec import catalog_sequences, config_for, prepare_sasrec
    from agent.rank.shadow import KEEP, shadow_catalog, shadow_sequential, shadow_split
    from agent.settings import Settings
    from tests.eval.test_two_stage import cycle_catalog

    settings = Settings.from_env({"TAILOR_HOME": str(tmp_path), "TAILOR_SASREC_EPOCHS": "2"})
    old, new = cycle_catalog(40), cycle_catalog(60)  # 20 more users' interactions
    assert warm_models(settings, old, new) == ([None], [None])  # nothing cached yet
    quiet = {"log": lambda m: None}
    prepare_sasrec(settings, old, **quiet)
    cfg = config_for(settings, old)
    sequences = {u: s for u, s in catalog_sequences(old).items() if len(s) > KEEP}
    truncated, _ = shadow_split(sequences)
    shadow_sequential(shadow_catalog(old), truncated, sequences, cfg, settings.models_dir,
                      settings.dataset, progress=False, **quiet)
    (serving,), (shadow,) = warm_models(settings, old, new)
    assert serving is not None and shadow is not None
    assert serving.info["valid_ndcg@10"] != shadow.info["valid_ndcg@10"] or \
        serving.info["curve"] != shadow.info["curve"]  # two models, not one twice
    said = []
    prepare_sasrec(settings, new, log=said.append, warm=serving)
    assert any("starting from the model fitted before" in m for m in said)
    assert warm_models(Settings.from_env({"TAILOR_HOME": str(tmp_path)}), old, new) == \
        ([None], [None])  # another config (no epoch cap): another key, nothing cached
