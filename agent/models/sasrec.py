"""SASRec (Kang & McAuley, 2018): a small causal self-attention next-item model.

Implemented here in torch because no maintained SASRec package installs beside this
stack (RecBole pins old torch/numpy). Trained with full-softmax cross-entropy over the
catalog at every position of every training sequence (the loss the strong published
figures use, rather than the original sampled BCE), early-stopped on held-out next
items: training stops after ``patience`` evaluations without a better validation
NDCG@10, not at a fixed epoch count while it is still improving.

The agent uses it as a candidate source (a session's liked titles are its input
sequence); the evaluation's ``sasrec`` baseline is this same code.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

WEIGHTS, CONFIG = "sasrec.pt", "sasrec.json"


@dataclass(frozen=True)
class SASRecConfig:
    dim: int = 64
    blocks: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    lr: float = 1e-3
    batch: int = 32
    max_epochs: int = 2000  # a safety net only: early stopping is what ends training
    eval_every: int = 5
    patience: int = 8  # evaluations without improvement before stopping (40 epochs)
    seed: int = 0


def build_model(n_items: int, cfg: SASRecConfig):
    import torch
    from torch import nn

    class SASRecNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.items = nn.Embedding(n_items, cfg.dim, padding_idx=0)
            self.pos = nn.Embedding(cfg.max_len, cfg.dim)
            layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.dim * 2, cfg.dropout,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.dim)
            self.drop = nn.Dropout(cfg.dropout)
            mask = torch.triu(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool), 1)
            self.register_buffer("causal", mask)

        def forward(self, seq):  # seq: (B, L) item ids, 0 = padding on the left
            L = seq.shape[1]
            keep = (seq != 0).unsqueeze(-1)
            h = (self.items(seq) * cfg.dim ** 0.5 + self.pos.weight[:L]) * keep
            # Causal mask only: with left padding, a key-padding mask would leave the
            # padding rows with no key at all, and softmax over nothing is NaN.
            h = self.encoder(self.drop(h), mask=self.causal[:L, :L]) * keep
            return self.norm(h) @ self.items.weight.T  # (B, L, n_items)

    return SASRecNet()


def left_pad(seq, length: int) -> list[int]:
    """The last ``length`` items of ``seq``, padded with 0 on the left.

    >>> left_pad([1, 2, 3], 5), left_pad([1, 2, 3], 2)
    ([0, 0, 1, 2, 3], [2, 3])
    """
    seq = list(seq)[-length:]
    return [0] * (length - len(seq)) + seq


def ndcg10(ranked: Sequence[int], target: int) -> float:
    """NDCG@10 of one held-out item (the same formula as eval.metrics.ndcg_at_k).

    >>> ndcg10([5, 7, 9], 7), ndcg10([5], 7)
    (0.6309297535714575, 0.0)
    """
    ranked = list(ranked)[:10]
    return 1.0 / math.log2(ranked.index(target) + 2) if target in ranked else 0.0


class SASRec:
    """A trained network with its config: next-item scores for histories."""

    def __init__(self, net, cfg: SASRecConfig, n_items: int, info: dict | None = None):
        self.net, self.cfg, self.n_items, self.info = net.eval(), cfg, n_items, info or {}

    def scores_many(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(len(histories), n_items)`` next-item scores, in batches of 256."""
        import torch

        out = []
        for start in range(0, len(histories), 256):
            seq = torch.tensor([left_pad(h, self.cfg.max_len)
                                for h in histories[start:start + 256]])
            with torch.inference_mode():
                out.append(self.net(seq)[:, -1].numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, self.n_items))

    def scores(self, history: Sequence[int]) -> np.ndarray:
        return self.scores_many([history])[0]

    def rank_many(self, histories, k: int, valid: np.ndarray | None = None) -> list[list[int]]:
        """Top ``k`` unseen items per history (``valid``: a mask of rankable ids)."""
        s = self.scores_many(histories)
        s[:, 0] = -np.inf
        if valid is not None:
            s[:, ~valid] = -np.inf
        out = []
        for row, h in zip(s, histories):
            row[list(h)] = -np.inf
            top = np.argpartition(-row, k)[:k]
            out.append([int(i) for i in top[np.argsort(-row[top], kind="stable")]
                        if np.isfinite(row[i])])
        return out

    def save(self, folder: Path) -> None:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / WEIGHTS)
        (folder / CONFIG).write_text(json.dumps(
            {"config": asdict(self.cfg), "n_items": self.n_items, "info": self.info}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> SASRec:
        import torch

        meta = json.loads((folder / CONFIG).read_text())
        cfg = SASRecConfig(**meta["config"])
        net = build_model(meta["n_items"], cfg)
        net.load_state_dict(torch.load(folder / WEIGHTS, weights_only=True))
        return cls(net, cfg, meta["n_items"], meta["info"])


def train_sasrec(sequences: Sequence[Sequence[int]], n_items: int,
                 probe: Sequence[tuple[Sequence[int], int]], cfg: SASRecConfig | None = None,
                 valid: np.ndarray | None = None, log=print, progress: bool = True) -> SASRec:
    """Train on ``sequences`` (item ids >= 1, time order), early-stopped on ``probe``
    (``(history, next item)`` pairs never trained on); returns the best checkpoint."""
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    cfg = cfg or SASRecConfig()
    torch.manual_seed(cfg.seed)
    data = torch.tensor([left_pad(s, cfg.max_len + 1) for s in sequences])
    inputs, targets = data[:, :-1], data[:, 1:]
    net = build_model(n_items, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    model = SASRec(net, cfg, n_items)
    histories, wanted = [h for h, _ in probe], [t for _, t in probe]
    best, best_state, stale, curve = -1.0, None, 0, []
    t0 = time.perf_counter()
    bar = tqdm(range(1, cfg.max_epochs + 1), desc="training sasrec", unit="epoch",
               disable=not progress)
    for epoch in bar:
        net.train()
        for idx in torch.randperm(len(data)).split(cfg.batch):
            logits = net(inputs[idx])
            loss = F.cross_entropy(logits.reshape(-1, n_items), targets[idx].reshape(-1),
                                   ignore_index=0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % cfg.eval_every and epoch != cfg.max_epochs:
            continue
        net.eval()
        score = float(np.mean([ndcg10(r, t) for r, t in
                               zip(model.rank_many(histories, 10, valid), wanted)]))
        curve.append({"epoch": epoch, "loss": loss.item(), "valid_ndcg@10": score})
        bar.set_postfix(valid_ndcg=f"{score:.4f}", best=f"{max(best, score):.4f}")
        if score > best:
            best, stale = score, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    net.load_state_dict(best_state)
    stopped = "early stop" if stale >= cfg.patience else "epoch limit"
    model.info = {"valid_ndcg@10": best, "curve": curve, "train_s": time.perf_counter() - t0,
                  "stopped": stopped, "config": asdict(cfg)}
    log(f"sasrec: best validation NDCG@10 {best:.4f}; {curve[-1]['epoch']} epochs "
        f"({stopped}, {model.info['train_s']:.0f}s)")
    return model


# --- the agent's model: trained on the whole catalog's interactions, cached -------------
def catalog_sequences(catalog) -> dict[int, list[int]]:
    """Each user's items in time order, each item once (its first watch)."""
    from agent.data.stats import group_by_user

    return {u: list(dict.fromkeys(items))
            for u, items in group_by_user(catalog.user, catalog.item, catalog.timestamp).items()}


def config_for(settings) -> SASRecConfig:
    """The SASRec config ``settings`` ask for: the defaults, with ``sasrec_epochs`` (when
    set) as the epoch cap.

    >>> config_for(type("S", (), {"sasrec_epochs": 30})).max_epochs
    30
    """
    cap = getattr(settings, "sasrec_epochs", 0)
    return SASRecConfig(max_epochs=cap) if cap else SASRecConfig()


def model_key(catalog, cfg: SASRecConfig) -> str:
    """What the cached model depends on: the interactions and the config."""
    import hashlib

    h = hashlib.sha256()
    for a in (catalog.user, catalog.item, catalog.timestamp):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(asdict(cfg), sort_keys=True).encode())
    return h.hexdigest()[:12]


def model_dir(models_dir: Path, dataset: str, catalog, cfg: SASRecConfig) -> Path:
    return models_dir / f"sasrec-{dataset}-{model_key(catalog, cfg)}"


def train_for_catalog(catalog, cfg: SASRecConfig | None = None, log=print,
                      progress: bool = True) -> SASRec:
    """Train on every user's history but its last item; the last items of users with at
    least 3 items are the early-stopping targets (held out from training)."""
    cfg = cfg or SASRecConfig()
    seqs = catalog_sequences(catalog)
    train = [s[:-1] for s in seqs.values() if len(s) >= 3]
    probe = [(s[:-1], s[-1]) for s in seqs.values() if len(s) >= 3]
    valid = np.zeros(catalog.max_id + 1, dtype=bool)
    valid[list(catalog.items)] = True
    return train_sasrec(train, catalog.max_id + 1, probe, cfg, valid, log, progress)


def prepare_sasrec(settings, catalog, log=print, cfg: SASRecConfig | None = None) -> Path:
    """The cached agent model for ``settings.dataset``, trained now if missing."""
    cfg = cfg or config_for(settings)
    folder = model_dir(settings.models_dir, settings.dataset, catalog, cfg)
    if (folder / CONFIG).is_file():
        return folder
    log(f"training the sequential model for {settings.dataset} (once; cached in {folder})")
    model = train_for_catalog(catalog, cfg, log)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save(tmp)
    tmp.rename(folder)  # whole or absent: an interrupted run leaves no half model
    return folder


def sasrec_dir(settings, catalog, cfg: SASRecConfig | None = None) -> Path | None:
    """The folder of the cached agent model, or None when it has not been trained."""
    folder = model_dir(settings.models_dir, settings.dataset, catalog, cfg or config_for(settings))
    return folder if (folder / CONFIG).is_file() else None


def find_sasrec(settings, catalog, cfg: SASRecConfig | None = None) -> SASRec | None:
    """The cached agent model, or None when `tailor setup` has not trained it."""
    folder = sasrec_dir(settings, catalog, cfg)
    return SASRec.load(folder) if folder else None
