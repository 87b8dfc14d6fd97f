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
    # Weight matrices and embeddings start Xavier-normal, as in the reference PyTorch
    # SASRec; torch's N(0, 1) embeddings ("normal", the earlier models) make the first
    # logits so large that ML-100K took 40 epochs to reach validation NDCG@10 0.042,
    # against 0.110 with "xavier" (README, "Two stages", run F).
    init: str = "xavier"


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
            mask = torch.triu(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool), 1)
            self.register_buffer("causal", mask)
            if cfg.init == "xavier":
                for weight in self.parameters():
                    if weight.dim() > 1:
                        nn.init.xavier_normal_(weight)
                with torch.no_grad():
                    self.items.weight[0].zero_()  # padding
            elif cfg.init != "normal":
                raise ValueError(f"SASRec init must be xavier or normal, not {cfg.init!r}")

        def encode(self, seq):  # seq: (B, L) item ids, 0 = padding on the left
            L = seq.shape[1]
            keep = (seq != 0).unsqueeze(-1)
            h = (self.items(seq) * cfg.dim ** 0.5 + self.pos.weight[:L]) * keep
            # Causal mask only: with left padding, a key-padding mask would leave the
            # padding rows with no key at all, and softmax over nothing is NaN.
            mask = self.causal[:L, :L]
            if self.training:  # the same layers, with a dropout that is faster to draw
                h = dropout(h, cfg.dropout)
                for layer in self.encoder.layers:
                    h = train_block(layer, h, mask, cfg.dropout)
            else:
                h = self.encoder(h, mask=mask)
            return self.norm(h * keep)  # (B, L, dim)

        def forward(self, seq):
            return self.encode(seq) @ self.items.weight.T  # (B, L, n_items)

        def last(self, seq):
            """Scores of the item after each sequence: (B, n_items)."""
            return self.encode(seq)[:, -1] @ self.items.weight.T

        def loss(self, inputs, targets):
            """Full-softmax cross-entropy at every position with a next item; the
            catalog-wide scores are computed at those positions only (padding has none)."""
            from agent.models.linear_ce import linear_cross_entropy

            at = targets != 0
            return linear_cross_entropy(self.encode(inputs)[at], self.items.weight, targets[at])

    return SASRecNet()


def dropout(x, p: float):
    """Inverted dropout, as ``F.dropout`` in training, with the mask drawn by
    ``rand_like``: on this CPU ``bernoulli_`` took a quarter of a training step, and
    ``rand_like`` draws the same Bernoulli(1 - p) mask 2.2× faster."""
    import torch

    return x * ((torch.rand_like(x) >= p) / (1 - p)) if p else x


def train_block(layer, x, mask, p: float):
    """One ``nn.TransformerEncoderLayer`` (pre-norm, ReLU) in training, written out so
    that its four dropouts (attention weights included) use ``dropout``. It reads the
    layer's own weights, so a trained model's state is unchanged; a test checks it
    against the layer's forward with dropout 0."""
    from torch.nn import functional as F

    attn, (B, L, D) = layer.self_attn, x.shape
    heads = attn.num_heads
    q, k, v = (F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
               .view(B, L, 3, heads, D // heads).permute(2, 0, 3, 1, 4))
    weights = ((q @ k.transpose(-1, -2)) * (D // heads) ** -0.5).masked_fill(
        mask, float("-inf")).softmax(-1)
    out = (dropout(weights, p) @ v).transpose(1, 2).reshape(B, L, D)
    x = x + dropout(attn.out_proj(out), p)
    ff = layer.linear2(dropout(F.relu(layer.linear1(layer.norm2(x))), p))
    return x + dropout(ff, p)


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


class NextItemScorer:
    """Ranking from next-item scores: a subclass writes ``scores_many``."""

    n_items: int

    def scores_many(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        raise NotImplementedError

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


class SASRec(NextItemScorer):
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
                out.append(self.net.last(seq).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, self.n_items))

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
                 valid: np.ndarray | None = None, log=print, progress: bool = True,
                 checkpoint: Path | None = None, warm: SASRec | None = None) -> SASRec:
    """Train on ``sequences`` (item ids >= 1, time order), early-stopped on ``probe``
    (``(history, next item)`` pairs never trained on); returns the best checkpoint.

    ``checkpoint``: a file the state is saved to at every evaluation; a run on the same
    data and config that finds it resumes there (hours of ML-1M survive an interrupt).
    ``warm``: a model of the same config to start from (``tailor retrain``: the one
    fitted before the new interactions); new items start from fresh embeddings. It must
    not have seen a ``probe`` target."""
    import torch
    from tqdm import tqdm

    from agent.models.checkpoint import TrainingRun, fingerprint

    cfg = cfg or SASRecConfig()
    torch.manual_seed(cfg.seed)
    data = torch.tensor([left_pad(s, cfg.max_len + 1) for s in sequences])
    inputs, targets = data[:, :-1], data[:, 1:]
    net = build_model(n_items, cfg)
    if warm is not None:
        start_from(net, warm, cfg)
        log(f"sasrec: starting from the model fitted before ({warm.n_items - 1} items)")
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    model = SASRec(net, cfg, n_items)
    histories, wanted = [h for h, _ in probe], [t for _, t in probe]
    run = TrainingRun(fingerprint(data, n_items, probe, asdict(cfg), warm), checkpoint)
    if run.resume(net, opt):
        log(f"sasrec: resuming at epoch {run.epoch + 1} from {checkpoint}")
    bar = tqdm(range(run.epoch + 1, cfg.max_epochs + 1), desc="training sasrec",
               unit="epoch", disable=not progress, initial=run.epoch, total=cfg.max_epochs)
    for epoch in bar:
        if run.stale >= cfg.patience:
            break
        net.train()
        for idx in torch.randperm(len(data)).split(cfg.batch):
            if not bool((targets[idx] != 0).any()):
                continue
            loss = net.loss(inputs[idx], targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.loss = loss.item()
        if epoch % cfg.eval_every and epoch != cfg.max_epochs:
            continue
        net.eval()
        score = float(np.mean([ndcg10(r, t) for r, t in
                               zip(model.rank_many(histories, 10, valid), wanted)]))
        run.evaluated(epoch, score, net)
        bar.set_postfix(valid_ndcg=f"{score:.4f}", best=f"{run.best:.4f}")
        run.save(net, opt)
    net.load_state_dict(run.best_state)
    stopped = "early stop" if run.stale >= cfg.patience else "epoch limit"
    model.info = {"valid_ndcg@10": run.best, "curve": run.curve, "train_s": run.seconds(),
                  "stopped": stopped, "config": asdict(cfg)}
    log(f"sasrec: best validation NDCG@10 {run.best:.4f}; {run.curve[-1]['epoch']} epochs "
        f"({stopped}, {model.info['train_s']:.0f}s)")
    return model


def start_from(net, warm: SASRec, cfg: SASRecConfig) -> None:
    """Copy ``warm``'s weights into ``net`` (of config ``cfg``); item embeddings row by
    row, so items added since keep their fresh initialisation."""
    import torch

    shape = ("dim", "blocks", "heads", "max_len")
    if [getattr(warm.cfg, k) for k in shape] != [getattr(cfg, k) for k in shape]:
        raise ValueError(f"a warm start needs a model of the same {', '.join(shape)}")
    state = net.state_dict()
    with torch.no_grad():
        for name, value in warm.net.state_dict().items():
            if name == "items.weight":
                rows = min(len(value), len(state[name]))
                state[name][:rows] = value[:rows]
            elif name in state and state[name].shape == value.shape:
                state[name].copy_(value)
    net.load_state_dict(state)


def checkpoint_path(folder: Path) -> Path:
    """Where the training of the model cached in ``folder`` keeps its checkpoint."""
    return folder.with_name(folder.name + ".partial.pt")


def save_trained(model: SASRec, folder: Path) -> None:
    """Save ``model`` as ``folder``, whole or absent, and drop its training checkpoint."""
    tmp = folder.with_name(folder.name + ".tmp")
    model.save(tmp)
    tmp.rename(folder)  # whole or absent: an interrupted run leaves no half model
    checkpoint_path(folder).unlink(missing_ok=True)


# --- the agent's model: trained on the whole catalog's interactions, cached -------------
def catalog_sequences(catalog) -> dict[int, list[int]]:
    """Each user's items in time order, each item once (its first watch)."""
    from agent.data.stats import first_watches

    return first_watches(catalog.user, catalog.item, catalog.timestamp)


LONG_HISTORIES = 150  # mean items per user from which a model reads 200 of them, not 50


def config_for(settings, catalog=None) -> SASRecConfig:
    """The SASRec config ``settings`` ask for: the defaults, with ``sasrec_epochs`` (when
    set) as the epoch cap and ``sasrec_max_len`` (when set) as the input length. Unset,
    the length follows the data, as in the SASRec paper: 200 items where users have
    ``LONG_HISTORIES`` or more on average (ML-1M: 165), 50 elsewhere (ML-100K: 106).

    >>> config_for(type("S", (), {"sasrec_epochs": 30})).max_epochs
    30
    """
    changes = {}
    if getattr(settings, "sasrec_epochs", 0):
        changes["max_epochs"] = settings.sasrec_epochs
    if getattr(settings, "sasrec_max_len", 0):
        changes["max_len"] = settings.sasrec_max_len
    elif catalog is not None and len(catalog.user):
        mean = len(catalog.user) / len(np.unique(catalog.user))
        changes["max_len"] = 200 if mean >= LONG_HISTORIES else 50
    return SASRecConfig(**changes)


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
                      progress: bool = True, checkpoint: Path | None = None,
                      warm: SASRec | None = None) -> SASRec:
    """Train on every user's history but its last item; the last items of users with at
    least 3 items are the early-stopping targets (held out from training)."""
    cfg = cfg or SASRecConfig()
    seqs = catalog_sequences(catalog)
    train = [s[:-1] for s in seqs.values() if len(s) >= 3]
    probe = [(s[:-1], s[-1]) for s in seqs.values() if len(s) >= 3]
    valid = np.zeros(catalog.max_id + 1, dtype=bool)
    valid[list(catalog.items)] = True
    return train_sasrec(train, catalog.max_id + 1, probe, cfg, valid, log, progress,
                        checkpoint, warm)


def prepare_sasrec(settings, catalog, log=print, cfg: SASRecConfig | None = None,
                   warm: SASRec | None = None) -> Path:
    """The cached agent model for ``settings.dataset``, trained now if missing (from
    ``warm``'s weights when given: see ``train_sasrec``)."""
    cfg = cfg or config_for(settings, catalog)
    folder = model_dir(settings.models_dir, settings.dataset, catalog, cfg)
    if (folder / CONFIG).is_file():
        return folder
    log(f"training the sequential model for {settings.dataset} (once; cached in {folder})")
    model = train_for_catalog(catalog, cfg, log, checkpoint=checkpoint_path(folder), warm=warm)
    save_trained(model, folder)
    return folder


def sasrec_dir(settings, catalog, cfg: SASRecConfig | None = None) -> Path | None:
    """The folder of the cached agent model, or None when it has not been trained."""
    folder = model_dir(settings.models_dir, settings.dataset, catalog,
                       cfg or config_for(settings, catalog))
    return folder if (folder / CONFIG).is_file() else None


def find_sasrec(settings, catalog, cfg: SASRecConfig | None = None) -> SASRec | None:
    """The cached agent model, or None when `tailor setup` has not trained it."""
    folder = sasrec_dir(settings, catalog, cfg)
    return SASRec.load(folder) if folder else None
