"""Fine-tuning configuration: typed defaults < a YAML file < command-line flags.

Unknown keys are errors, so a typo in a config never silently trains with a default.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from agent.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
TASKS = ("rank", "state")
CANDIDATE_SOURCES = ("hybrid", "fusion")


@dataclass(frozen=True)
class FinetuneConfig:
    name: str = "smollm2-135m-ml-100k"  # the adapter's folder under TAILOR_HOME/adapters
    base_model: str | None = None  # None: the agent's model (TAILOR_MODEL)
    task: str = "rank"  # "rank": the verbalizer ranker; "state": the JSON state extractor
    # Data for task "state" (finetune.state_data): synthetic requests from the catalog
    state_examples: int = 2000
    state_val_examples: int = 150
    # Data (finetune.data)
    candidates: int = 10  # the LLM's window: the agent's llm_candidates
    # Whose top ``candidates`` the prompts list: "hybrid" (the retriever's; finetune.data)
    # or "fusion" (the learned fusion's, on the tailor system's cases; finetune.fusion_data)
    candidates_from: str = "hybrid"
    snapshots: int = 10  # rounds of cut points per user
    chat_share: float = 0.3  # share of dialogue-shaped examples
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_layers: int = 0  # 0: every layer; k: only the top k (backward stops below them)
    cache_frozen: bool = True  # with lora_layers: compute the frozen layers once per example
    quant: str = "none"  # "4bit": QLoRA (bitsandbytes nf4 base weights)
    # Optimisation
    lr: float = 5e-4
    warmup_steps: int = 20
    batch_size: int = 8  # examples per optimizer step (accumulated one prompt at a time)
    epochs: float = 2.0
    eval_every: int = 400  # examples between validation passes (the learning curve)
    val_users: int = 0  # 0: every honest validation user
    max_minutes: float = 60.0  # training-loop budget; the best checkpoint so far is kept
    seed: int = 0
    fusion_grid: tuple[float, ...] = field(default=(0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0))

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, not {self.task!r}")
        if self.candidates_from not in CANDIDATE_SOURCES:
            raise ConfigError(f"candidates_from must be one of {CANDIDATE_SOURCES}, not "
                              f"{self.candidates_from!r}")
        if self.quant not in ("none", "4bit"):
            raise ConfigError(f"quant must be 'none' or '4bit' (QLoRA), not {self.quant!r}")
        if not 2 <= self.candidates <= 26:
            raise ConfigError(f"candidates must be 2..26, not {self.candidates}")
        for name in ("snapshots", "lora_r", "batch_size", "eval_every", "state_examples",
                     "state_val_examples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0.0 <= self.chat_share <= 1.0:
            raise ConfigError(f"chat_share must be in [0, 1], not {self.chat_share}")
        if self.lr <= 0 or self.epochs <= 0 or self.max_minutes <= 0:
            raise ConfigError("lr, epochs and max_minutes must be positive")

    def to_json(self) -> dict:
        return asdict(self)

    def data_key(self) -> str:
        """Hash of what the training examples depend on (so cached examples are reused)."""
        from agent.rank.verbalizer import DETAILS, MAX_PROMPT_TOKENS, RANK_PROMPTS
        from prompts import prompt_hashes

        if self.task == "state":
            from finetune.state_data import data_fingerprint

            return data_fingerprint(self.state_examples, self.state_val_examples, self.seed)

        keys = ("candidates", "snapshots", "chat_share", "seed", "base_model")
        parts = {**{k: getattr(self, k) for k in keys}, "prompts": prompt_hashes(RANK_PROMPTS),
                 "budget": [MAX_PROMPT_TOKENS, [str(d) for d in DETAILS]]}
        if self.candidates_from != "hybrid":  # the hybrid's keys stay those cached before
            from agent.rank.fusion import feature_names
            from agent.rank.shadow import HELD_OUT

            parts["fusion"] = [feature_names(), HELD_OUT]
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_config(path: str | Path | None = None, **overrides) -> FinetuneConfig:
    """Defaults, then the YAML file (a bare name is looked up in ``finetune/configs``),
    then the non-None ``overrides``."""
    import yaml

    values: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / f"{path}.yaml").exists():
            p = CONFIG_DIR / f"{path}.yaml"
        if not p.is_file():
            known = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
            raise ConfigError(f"no fine-tuning config {path!r}; give a YAML file or one of: {known}")
        values = yaml.safe_load(p.read_text()) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{p}: expected a mapping of settings")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name: f for f in fields(FinetuneConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown fine-tuning settings {unknown}; known: {', '.join(known)}")
    for k in ("target_modules", "fusion_grid"):
        if k in values:
            values[k] = tuple(values[k])
    try:
        return replace(FinetuneConfig(), **values)
    except TypeError as e:
        raise ConfigError(f"bad fine-tuning setting: {e}") from None
