import numpy as np
import pytest

from agent.data.catalog import Catalog
from eval.protocols import make_split
from eval.sasrec import SASRecConfig, SASRecSystem, left_pad
from tests.conftest import tiny_items


def test_left_pad():
    assert left_pad([1, 2, 3], 5) == [0, 0, 1, 2, 3] and left_pad([1, 2, 3], 2) == [2, 3]


def test_sasrec_learns_a_deterministic_sequence():
    # Every user watches a rotation of the same cycle 1 -> 2 -> ... -> 12 -> 1: the next
    # item is always the successor, which a sequence model must learn.
    rows = []
    for u in range(1, 41):
        start = u % 12
        seq = [(start + k) % 12 + 1 for k in range(10)]
        rows += [(u, i, t) for t, i in enumerate(seq)]
    u, i, t = (np.array(x) for x in zip(*rows))
    cat = Catalog(tiny_items(), {}, u.astype(np.int32), i.astype(np.int32), t, head=set())
    split = make_split(cat, n_negatives=3)
    cfg = SASRecConfig(dim=16, blocks=1, heads=1, max_len=12, dropout=0.0, lr=5e-3, batch=16,
                       max_epochs=40, eval_every=10, patience=10)
    system = SASRecSystem.train(split.train_catalog, split, cfg, log=lambda m: None)
    hits = [system.rank(c, 1)[0] == c.target for c in split.test]
    assert np.mean(hits) >= 0.9
    assert system.info["valid_ndcg@10"] >= 0.9 and system.info["curve"]


def test_a_saved_model_loads_with_the_same_scores(tmp_path):
    from agent.models.sasrec import SASRec, train_sasrec

    seqs = [[(s + k) % 12 + 1 for k in range(8)] for s in range(24)]
    cfg = SASRecConfig(dim=8, blocks=1, heads=1, max_len=8, dropout=0.0, max_epochs=3,
                       eval_every=1, patience=5)
    model = train_sasrec(seqs, 13, [([1, 2, 3], 4)], cfg, log=lambda m: None, progress=False)
    model.save(tmp_path / "m")
    again = SASRec.load(tmp_path / "m")
    assert np.allclose(model.scores([1, 2, 3]), again.scores([1, 2, 3]))
    assert again.info["stopped"] == "epoch limit" and len(again.info["curve"]) == 3
    assert model.rank_many([[1, 2, 3]], 2) == again.rank_many([[1, 2, 3]], 2)
    assert not {1, 2, 3, 0} & set(model.rank_many([[1, 2, 3]], 5)[0])


def test_an_interrupted_training_resumes_where_its_checkpoint_left_off(tmp_path, monkeypatch):
    from agent.models import sasrec as sas

    seqs = [[(s + k) % 12 + 1 for k in range(8)] for s in range(24)]
    cfg = SASRecConfig(dim=8, blocks=1, heads=1, max_len=8, dropout=0.1, max_epochs=6,
                       eval_every=2, patience=5)
    probe = [([1, 2, 3], 4), ([5, 6], 7)]
    whole = sas.train_sasrec(seqs, 13, probe, cfg, log=lambda m: None, progress=False)
    ckpt = tmp_path / "m.partial.pt"
    real, calls = sas.SASRec.rank_many, []

    def dies_at_the_second_evaluation(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(sas.SASRec, "rank_many", dies_at_the_second_evaluation)
    try:
        sas.train_sasrec(seqs, 13, probe, cfg, log=lambda m: None, progress=False,
                         checkpoint=ckpt)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(sas.SASRec, "rank_many", real)
    assert ckpt.is_file()
    said = []
    again = sas.train_sasrec(seqs, 13, probe, cfg, log=said.append, progress=False,
                             checkpoint=ckpt)
    assert "resuming at epoch 3" in said[0]
    assert [c["epoch"] for c in again.info["curve"]] == [2, 4, 6]
    # The same run as the uninterrupted one: the same batches, dropout and updates.
    assert np.allclose([c["loss"] for c in again.info["curve"]],
                       [c["loss"] for c in whole.info["curve"]], rtol=1e-5)
    assert np.allclose(whole.scores([1, 2, 3]), again.scores([1, 2, 3]), atol=1e-5)
    # A damaged checkpoint is not fatal: the run starts anew.
    damaged = tmp_path / "damaged.partial.pt"
    damaged.write_bytes(b"not a checkpoint")
    said.clear()
    sas.train_sasrec(seqs, 13, probe, cfg, log=said.append, progress=False, checkpoint=damaged)
    assert not any("resuming" in m for m in said) and damaged.stat().st_size > 100
    # Another config (or data) does not pick up this checkpoint: it starts anew.
    said.clear()
    sas.train_sasrec(seqs, 13, probe, SASRecConfig(**{**cfg.__dict__, "lr": 2e-3}),
                     log=said.append, progress=False, checkpoint=ckpt)
    assert not any("resuming" in m for m in said)


def test_a_saved_model_drops_its_checkpoint(tmp_path):
    from agent.models.sasrec import checkpoint_path, save_trained, train_sasrec

    cfg = SASRecConfig(dim=8, blocks=1, heads=1, max_len=8, max_epochs=2, eval_every=1)
    folder = tmp_path / "sasrec-x"
    model = train_sasrec([[1, 2, 3, 4]] * 4, 13, [([1, 2], 3)], cfg, log=lambda m: None,
                         progress=False, checkpoint=checkpoint_path(folder))
    assert checkpoint_path(folder).is_file()
    save_trained(model, folder)
    assert (folder / "sasrec.json").is_file() and not checkpoint_path(folder).exists()


def test_a_warm_start_keeps_what_the_model_knew_and_adds_new_items():
    import pytest

    from agent.models.sasrec import train_sasrec

    seqs = [[(s + k) % 12 + 1 for k in range(8)] for s in range(24)]
    cfg = SASRecConfig(dim=16, blocks=1, heads=1, max_len=8, dropout=0.0, lr=5e-3,
                       max_epochs=40, eval_every=10, patience=5)
    probe = [([1, 2, 3], 4), ([7, 8], 9), ([10, 11, 12], 1), ([4, 5, 6], 7)]
    quiet = {"log": lambda m: None, "progress": False}
    old = train_sasrec(seqs, 13, probe, cfg, **quiet)
    assert old.info["valid_ndcg@10"] >= 0.8
    # Two items more (13, 14) and one epoch: warm, it still knows the cycle; cold, not yet.
    more = seqs + [[13, 14, 13, 14]] * 4
    one = SASRecConfig(**{**cfg.__dict__, "max_epochs": 1, "eval_every": 1})
    warm = train_sasrec(more, 15, probe, one, warm=old, **quiet)
    cold = train_sasrec(more, 15, probe, one, **quiet)
    assert warm.info["valid_ndcg@10"] >= 0.8 and cold.info["valid_ndcg@10"] < 0.6
    assert warm.scores([1, 2, 3]).shape == (15,)
    with pytest.raises(ValueError, match="same dim"):
        train_sasrec(more, 15, probe, SASRecConfig(**{**one.__dict__, "dim": 8}), warm=old,
                     **quiet)


def test_a_new_model_starts_near_uniform_scores():
    # Xavier-normal weights (the reference SASRec's): an untrained model's scores are
    # small, so cross-entropy starts near log(n) and learns from the first epoch; torch's
    # N(0, 1) embeddings start it with logits of std ~8 (the earlier, slow models).
    import torch

    from agent.models.sasrec import build_model

    torch.manual_seed(0)
    seq = torch.tensor([[0, 0, 3, 5, 7, 9]])
    xavier = build_model(3000, SASRecConfig(max_len=6)).eval()
    normal = build_model(3000, SASRecConfig(max_len=6, init="normal")).eval()
    with torch.no_grad():
        assert float(xavier.last(seq).std()) < 0.5 < 3 < float(normal.last(seq).std())
        assert float(xavier.items.weight[0].abs().sum()) == 0.0  # the padding row
    with pytest.raises(ValueError, match="init must be"):
        build_model(10, SASRecConfig(init="zeros"))


def test_training_runs_the_same_layers_as_scoring():
    # Training writes the encoder layers out (for a faster dropout); with dropout 0 it
    # must compute what the layers' own forward computes when the model scores.
    import torch

    from agent.models.sasrec import build_model

    torch.manual_seed(0)
    net = build_model(50, SASRecConfig(max_len=8, dropout=0.0, blocks=2, heads=2))
    seq = torch.randint(1, 50, (4, 8))
    seq[0, :5] = 0
    with torch.no_grad():
        scored, trained = net.eval().encode(seq), net.train().encode(seq)
    assert torch.allclose(scored, trained, atol=1e-5)


def test_dropout_keeps_one_minus_p_and_rescales():
    import torch

    from agent.models.sasrec import dropout

    torch.manual_seed(0)
    out = dropout(torch.ones(200_000), 0.2)
    kept = out[out != 0]
    assert abs(len(kept) / len(out) - 0.8) < 0.005
    assert torch.allclose(kept, torch.full_like(kept, 1.25))
    assert abs(float(out.mean()) - 1.0) < 0.01
    assert dropout(torch.ones(3), 0.0).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("rows, chunk", [(7, 3), (40, 512), (1, 4)])
def test_the_fused_loss_is_the_full_softmax_cross_entropy(rows, chunk):
    # linear_cross_entropy computes cross_entropy(h @ w.T, y) chunk by chunk with its own
    # backward pass: the loss and both gradients must be the unfused ones.
    import torch
    from torch.nn import functional as F

    from agent.models.linear_ce import linear_cross_entropy

    torch.manual_seed(rows)
    h = torch.randn(rows, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 11, (rows,))
    y[0] = y[-1]  # a class that is the target twice
    fused = linear_cross_entropy(h, w, y, chunk)
    (3 * fused).backward()
    got = fused.item(), h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    plain = F.cross_entropy(h @ w.T, y)
    (3 * plain).backward()
    assert got[0] == pytest.approx(plain.item(), rel=1e-12)
    assert torch.allclose(got[1], h.grad, atol=1e-12)
    assert torch.allclose(got[2], w.grad, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: linear_cross_entropy(a, b, y, chunk), (h, w))
