"""SASRec (Kang & McAuley, 2018): a small causal self-attention next-item model.

Implemented here in torch because no maintained SASRec package installs beside
this stack (RecBole pins old torch/numpy). Trained with full softmax
cross-entropy over the catalog (stronger and simpler than SASRec's original
sampled BCE), early-stopped on the validation targets of the same split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from eval.systems import ScoringSystem


@dataclass(frozen=True)
class SASRecConfig:
    dim: int = 64
    blocks: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    lr: float = 1e-3
    batch: int = 32
    epochs: int = 200
    eval_every: int = 5
    patience: int = 4  # evaluations without improvement before stopping
    seed: int = 0


def build_model(n_items: int, cfg: SASRecConfig):
    import torch
    from torch import nn

    class SASRec(nn.Module):
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

    return SASRec()


def left_pad(seq, length: int) -> list[int]:
    seq = list(seq)[-length:]
    return [0] * (length - len(seq)) + seq


class SASRecSystem(ScoringSystem):
    name = "sasrec"

    def __init__(self, catalog, model, cfg: SASRecConfig, info: dict):
        super().__init__(catalog)
        self.model, self.cfg, self.info = model.eval(), cfg, info

    def scores(self, case) -> np.ndarray:
        import torch

        seq = torch.tensor([left_pad(case.history, self.cfg.max_len)])
        with torch.inference_mode():
            return self.model(seq)[0, -1].numpy()

    def rank_many(self, cases, k: int) -> list[list[int]]:
        """Top ``k`` for many cases in batched forward passes (validation during training)."""
        import torch

        out = []
        for start in range(0, len(cases), 256):
            chunk = cases[start:start + 256]
            seq = torch.tensor([left_pad(c.history, self.cfg.max_len) for c in chunk])
            with torch.inference_mode():
                s = self.model(seq)[:, -1].numpy().astype(np.float64)
            s[:, ~self.valid] = -np.inf
            for row, c in zip(s, chunk):
                row[list(c.history)] = -np.inf
                top = np.argpartition(-row, k)[:k]
                out.append([int(i) for i in top[np.argsort(-row[top], kind="stable")]])
        return out

    @classmethod
    def train(cls, catalog, split, cfg: SASRecConfig | None = None, log=print) -> "SASRecSystem":
        import torch
        from torch.nn import functional as F
        from tqdm import tqdm

        from eval.metrics import ndcg_at_k

        cfg = cfg or SASRecConfig()
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        n_items = catalog.max_id + 1
        # Training sequences: each user's training history (validation and test excluded).
        seqs = [left_pad(c.history, cfg.max_len + 1) for c in split.valid]
        data = torch.tensor(seqs)
        inputs, targets = data[:, :-1], data[:, 1:]
        model = build_model(n_items, cfg)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
        system = cls(catalog, model, cfg, {})
        probe = split.valid if len(split.valid) <= 1000 else \
            [split.valid[i] for i in rng.choice(len(split.valid), 1000, replace=False)]
        best, best_state, stale, curve = -1.0, None, 0, []
        t0 = time.perf_counter()
        for epoch in tqdm(range(1, cfg.epochs + 1), desc="training sasrec", unit="epoch"):
            model.train()
            for idx in torch.randperm(len(data)).split(cfg.batch):
                logits = model(inputs[idx])
                loss = F.cross_entropy(logits.reshape(-1, n_items), targets[idx].reshape(-1),
                                       ignore_index=0)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                model.eval()
                score = float(np.mean([ndcg_at_k(r, {c.target}, 10)
                                       for c, r in zip(probe, system.rank_many(probe, 10))]))
                curve.append({"epoch": epoch, "loss": loss.item(), "valid_ndcg@10": score})
                if score > best:
                    best, stale = score, 0
                    best_state = {k: v.clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
        model.load_state_dict(best_state)
        system.info = {"valid_ndcg@10": best, "curve": curve, "train_s": time.perf_counter() - t0,
                       "config": cfg.__dict__}
        log(f"sasrec: best validation NDCG@10 {best:.4f} after {curve[-1]['epoch']} epochs "
            f"({system.info['train_s']:.0f}s)")
        return system
