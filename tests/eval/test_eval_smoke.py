"""The CI smoke configuration of `tailor eval`: real data and model, a few users."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.assets


def test_eval_smoke_writes_a_readable_report(real_settings, tmp_path):
    out = tmp_path / "eval"
    env = dict(os.environ, TAILOR_HOME=str(real_settings.home))
    run = subprocess.run([sys.executable, "-m", "agent", "eval", "--systems",
                          "popularity,itemknn,retrieval,hybrid,llm-zero", "--users", "12",
                          "--seed", "1", "--dialogues", "2", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    systems = report["systems"]
    assert list(systems) == ["popularity", "itemknn", "retrieval", "hybrid", "llm-zero"]
    for name, r in systems.items():
        m = r["metrics"]
        for key in ("ndcg@10", "recall@10", "hr@10", "mrr@10", "tail_share@10", "coverage@10",
                    "gini@10", "ild@10", "novelty@10", "oov_rate@20"):
            assert 0.0 <= m[key] <= (20.0 if key.startswith("novelty") else 1.0), (name, key)
        assert m["oov_rate@20"] == 0.0 and m["history_repeat@20"] == 0.0
        assert len(r["per_user"]) == 12 and r["sampled_metrics"]["hr@10"] >= m["hr@10"]
    assert systems["llm-zero"]["metrics"]["faithfulness"] == 1.0
    assert report["protocol"]["users_evaluated"] == 12 and report["git_sha"]
    assert set(report["prompt_hashes"]) == {"rank_system", "rank_user", "rank_demos",
                                            "rank_catalog_system", "rank_catalog_user"}
    conv = report["conversation"]
    assert set(conv) == {"hybrid", "llm-zero"}
    for c in conv.values():
        assert 0.0 <= c["success@10"] <= 1.0 and len(c["success@10_by_turn"]) == 5
        assert c["dialogues"] == 2 and c["examples"][0]["messages"]
    assert (out / "report.md").read_text().startswith("# Evaluation on ml-100k")
    assert (out / "accuracy_vs_tail.png").stat().st_size > 1000


def test_unknown_system_is_a_clear_error(real_settings, capsys):
    from agent.interfaces.cli import main

    assert main(["eval", "--systems", "popularity,magic"]) == 2
    assert "unknown system 'magic'" in capsys.readouterr().err


def test_lora_systems_and_the_tail_frontier(real_settings, tmp_path):
    """llm-lora with an adapter by name, and the re-ranker's strengths on top of it."""
    import shutil

    from tests.lora_adapter import save_random_lora

    name = "ci-random-lora"
    adapter = save_random_lora(str(real_settings.models_dir / "smollm2-135m-instruct"),
                               real_settings.adapters_dir / name)
    try:
        out = tmp_path / "eval"
        env = dict(os.environ, TAILOR_HOME=str(real_settings.home))
        run = subprocess.run([sys.executable, "-m", "agent", "eval", "--adapter", name,
                              "--systems", "llm-lora,llm-lora-tail:0.5,llm-lora-tail:1",
                              "--users", "6", "--seed", "2", "--dialogues", "1",
                              "--out", str(out)], capture_output=True, text=True, env=env,
                             timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        shutil.rmtree(adapter, ignore_errors=True)
    report = json.loads((out / "report.json").read_text())
    systems = report["systems"]
    assert list(systems) == ["llm-lora", "llm-lora-tail:0.5", "llm-lora-tail:1"]
    assert report["adapter"] == name and set(report["conversation"]) == {"llm-lora"}
    tail = [systems[n]["metrics"]["tail_share@10"] for n in systems]
    assert tail[0] <= tail[1] <= tail[2] and tail[2] > tail[0]
    for r in systems.values():
        assert r["metrics"]["oov_rate@20"] == 0.0 and r["metrics"]["history_repeat@20"] == 0.0


def test_the_tailor_system_beside_sasrec(real_settings, tmp_path):
    """The two-stage pipeline on real data: SASRec trained on the split (early-stopped),
    the fusion over every source, the recall of each source and the importances."""
    out = tmp_path / "eval"
    env = dict(os.environ, TAILOR_HOME=str(real_settings.home))
    env.setdefault("TAILOR_SASREC_EPOCHS", "30")  # the path, not the quality (as `make test`)
    run = subprocess.run([sys.executable, "-m", "agent", "eval", "--systems",
                          "sasrec,tailor,tailor-nofloor,llm-feature:40", "--users", "20",
                          "--seed", "1",
                          "--llm-users", "10", "--fusion-users",
                          "150", "--tail-choice", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert list(report["systems"]) == ["sasrec", "tailor", "tailor-nofloor", "llm-feature-off",
                                       "llm-feature"]
    assert report["training"]["tailor"]["tail_floor"] is True
    assert report["training"]["tailor-nofloor"]["tail_floor"] is False
    for name, r in report["systems"].items():
        assert len(r["per_user"]) == (10 if name.startswith("llm") else 20)
        assert r["metrics"]["oov_rate@20"] == 0.0
        assert r["metrics"]["history_repeat@20"] == 0.0
    training = report["training"]["tailor"]
    recall = training["recall@50_valid"]
    assert recall["union"] >= max(v for k, v in recall.items() if k != "union") > 0
    assert abs(sum(training["importances"].values()) - 1.0) < 1e-6
    assert training["train_users"] == 150  # --fusion-users: a quick fusion, not every user's
    assert "Recall@50 on the validation users" in (out / "report.md").read_text()
    # llm-feature: the same sampled cases with and without the LLM's column (whole users)
    llm = report["training"]["llm-feature"]
    assert llm["cases"] >= 40 and llm["importances"]["llm"] == llm["importance_llm"] >= 0
    assert "the LLM scoring each one's top" in (out / "report.md").read_text()
    # --tail-choice: the rule's curve over the same training cases
    choice = training["tail_choice"]
    assert choice["cases"] == training["train_cases"] and len(choice["curve"]) == 21
    assert choice["chosen"] is None or 0 <= choice["chosen"] <= 1
    assert "least boost reaching both" in (out / "report.md").read_text()
