"""A training loop's state between evaluations, saved to a checkpoint file so that a
long run (SASRec on ML-1M: hours on a CPU) resumes where it stopped, with the same
batches and dropout (the RNG is saved too) as an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path


def fingerprint(data, n_items: int, probe, config: dict, warm=None) -> str:
    """What a checkpoint must match to be resumed: the training data, the catalog size,
    the early-stopping probe, the config and the model started from."""
    h = hashlib.sha256(data.numpy().tobytes())
    if warm is not None:
        h.update(warm.net.items.weight.detach().numpy().tobytes())
    h.update(json.dumps([n_items, [[list(map(int, a)), int(b)] for a, b in probe],
                         config]).encode())
    return h.hexdigest()


class TrainingRun:
    """The training loop's state between evaluations, and its checkpoint file."""

    def __init__(self, fingerprint: str, path: Path | None):
        self.fingerprint, self.path = fingerprint, Path(path) if path else None
        self.epoch, self.best, self.best_state, self.stale = 0, -1.0, None, 0
        self.curve, self.loss, self.before = [], float("nan"), 0.0
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def evaluated(self, epoch: int, score: float, net) -> None:
        self.epoch = epoch
        self.curve.append({"epoch": epoch, "loss": self.loss, "valid_ndcg@10": score})
        if score > self.best:
            self.best, self.stale = score, 0
            self.best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            self.stale += 1

    def save(self, net, opt) -> None:
        import torch

        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"fingerprint": self.fingerprint, "epoch": self.epoch, "best": self.best,
                    "best_state": self.best_state, "stale": self.stale, "curve": self.curve,
                    "seconds": self.seconds(), "net": net.state_dict(),
                    "opt": opt.state_dict(), "rng": torch.get_rng_state()}, tmp)
        tmp.replace(self.path)  # whole or absent

    def resume(self, net, opt) -> bool:
        """Load the checkpoint when there is one for this run; False when starting anew."""
        import torch

        if self.path is None or not self.path.is_file():
            return False
        try:
            state = torch.load(self.path, weights_only=True)
        except Exception:  # unreadable (another torch, a damaged disk): start anew
            return False
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            return False
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.best, self.best_state = state["epoch"], state["best"], state["best_state"]
        self.stale, self.curve, self.before = state["stale"], state["curve"], state["seconds"]
        return True
