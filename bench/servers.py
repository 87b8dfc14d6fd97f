"""The servers the benchmark starts: vLLM (``agent.llm.serving``) and ``tailor serve``.

Both run in their own process group with a bounded start-up wait and are stopped
by process group on exit, whatever happened in between.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from agent.errors import BackendError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def vllm_server(settings, workdir: Path, wait_s: float, log=print) -> Iterator[dict]:
    """A vLLM server for the configured model (and adapter, when one is set) on a free
    port, started like ``tailor serve-llm --eager`` and warmed the same way. Yields
    ``{"url", "model", "pid", "start_s", "log"}``."""
    from agent.build import adapter_location, model_location
    from agent.llm.serving import (
        ServerSpec, VLLMServer, served_name, server_env, vllm_flavour, warm_up)

    model = model_location(settings)
    adapters = {settings.adapter: adapter_location(settings)} if settings.adapter else {}
    spec = ServerSpec(model, served_name(model), port=free_port(), adapters=adapters,
                      flavour=vllm_flavour(), eager=True)
    env = server_env(settings.home, kv_cache_gib=1)
    # Dev mode adds POST /reset_prefix_cache (on this loopback-only server), so that a
    # phase of the benchmark never finds the previous phase's prompts already cached.
    env["VLLM_SERVER_DEV_MODE"] = "1"
    server = VLLMServer(spec, env, workdir / "vllm.log")
    name = settings.adapter or spec.served_name
    t0 = time.perf_counter()
    try:
        server.start()
        log(f"  vLLM pid {server.pid}, log {server.log_path}")
        server.wait_healthy(wait_s, progress=log, every_s=30)
        warm_up(spec.url + "/v1", [name], settings, timeout=wait_s)
        yield {"url": spec.url + "/v1", "root": spec.url, "model": name, "pid": server.pid,
               "start_s": time.perf_counter() - t0, "log": str(server.log_path),
               "command": spec.command()}
    finally:
        server.stop()


def cold_prefix_cache(server: dict, settings, timeout: float = 120.0) -> None:
    """Empty the vLLM server's prefix cache, then warm the ranking prompt's fixed part
    again (as ``tailor serve-llm`` does at start): the state a real first request meets.

    Raises:
        BackendError: the server refused (it was started without dev mode).
    """
    import urllib.error
    import urllib.request

    from agent.llm.serving import warm_up

    req = urllib.request.Request(server["root"] + "/reset_prefix_cache", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
    except (urllib.error.URLError, OSError) as e:
        raise BackendError(f"could not reset the vLLM prefix cache: {e}") from None
    warm_up(server["url"], [server["model"]], settings, timeout=timeout)


def settings_env(settings, **overrides) -> dict[str, str]:
    """``TAILOR_*`` variables that make a child process build these settings
    (None fields and the API key left out).

    >>> from agent.settings import Settings
    >>> env = settings_env(Settings(home=Path("/h")), llm_timeout=60.0)
    >>> env["TAILOR_HOME"], env["TAILOR_LLM_TIMEOUT"], "TAILOR_LLM_URL" in env
    ('/h', '60.0', False)
    """
    values = dataclasses.asdict(dataclasses.replace(settings, **overrides))
    return {f"TAILOR_{k.upper()}": str(v) for k, v in values.items()
            if v is not None and k != "api_key"}


def child_env(base: dict[str, str], tailor: dict[str, str]) -> dict[str, str]:
    """``base`` without any ``TAILOR_*`` of its own, plus ``tailor``.

    >>> child_env({"PATH": "/bin", "TAILOR_X": "1"}, {"TAILOR_HOME": "/h"})
    {'PATH': '/bin', 'TAILOR_HOME': '/h'}
    """
    return {**{k: v for k, v in base.items() if not k.startswith("TAILOR_")}, **tailor}


def api_home(settings, workdir: Path) -> Path:
    """A data home for the benchmark's API server: the real data, models and adapters
    linked, a copy of the index (two processes never share one Chroma store), and its
    own sessions database, so benchmark sessions never land in the user's."""
    home = workdir / "api-home"
    home.mkdir(parents=True, exist_ok=True)
    for name in ("data", "models", "adapters"):
        if (settings.home / name).exists() and not (home / name).exists():
            (home / name).symlink_to((settings.home / name).resolve())
    if not (home / "index").exists():
        shutil.copytree(settings.index_dir(), home / "index")
    return home


@contextmanager
def api_server(settings, workdir: Path, llm_url: str | None, llm_model: str | None,
               base_env: dict[str, str], log_path: Path, wait_s: float = 300,
               log=print) -> Iterator[dict]:
    """``tailor serve`` on 127.0.0.1 in a child process, ranking through ``llm_url`` (or,
    None, with its own in-process model), its data home under ``workdir`` (see
    ``api_home``). Yields ``{"url", "pid", "start_s", "log"}``."""
    from agent.llm.serving import http_ok

    home = api_home(settings, workdir)
    port = free_port()
    served = {} if not llm_url else (
        {"adapter": llm_model} if settings.adapter else {"llm_model": llm_model})
    env = child_env(base_env, settings_env(settings, home=home, llm_url=llm_url,
                                           llm_timeout=60.0, quant="none", **served))
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    try:
        while not http_ok(url + "/health", timeout=1.0):
            if proc.poll() is not None or time.perf_counter() - t0 > wait_s:
                raise BackendError(f"`tailor serve` did not come up (code {proc.poll()}); "
                                   f"log {log_path}:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        log(f"  tailor serve pid {proc.pid} on {url}")
        yield {"url": url, "pid": proc.pid, "start_s": time.perf_counter() - t0,
               "log": str(log_path)}
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGINT to the child's process group, SIGKILL after ``grace_s``."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything the leader left behind
    except (ProcessLookupError, PermissionError):
        pass
