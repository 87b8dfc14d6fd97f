"""Server process management, without vLLM: command lines, adapters, waiting, stopping."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from agent.errors import BackendError, ConfigError
from agent.llm.serving import (
    ServerSpec, VLLMServer, find_adapters, max_lora_rank, server_env, served_name)
from tests.agent.retrieve.test_chroma_server import free_port


def make_adapter(folder, r=8):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "peft_type": "LORA"}))
    return folder


def test_find_adapters_registers_every_adapter_folder_by_name(tmp_path):
    assert find_adapters(tmp_path / "missing") == {}
    a, b = make_adapter(tmp_path / "ml100k-v1"), make_adapter(tmp_path / "b", r=16)
    (tmp_path / "notes.txt").write_text("files are ignored")
    assert find_adapters(tmp_path) == {"b": b, "ml100k-v1": a}


def test_a_folder_that_is_not_an_adapter_is_an_error(tmp_path):
    make_adapter(tmp_path / "good")
    (tmp_path / "checkpoint-10").mkdir()
    with pytest.raises(ConfigError, match="checkpoint-10 has no adapter_config.json"):
        find_adapters(tmp_path)


def test_an_adapter_name_vllm_cannot_serve_is_an_error(tmp_path):
    make_adapter(tmp_path / "my adapter")
    with pytest.raises(ConfigError, match="must be letters"):
        find_adapters(tmp_path)


@pytest.mark.parametrize("ranks,expected", [([], 8), ([4], 8), ([8, 16], 16), ([24], 32)])
def test_max_lora_rank_is_the_smallest_value_vllm_accepts(tmp_path, ranks, expected):
    adapters = {f"a{k}": make_adapter(tmp_path / f"a{k}", r) for k, r in enumerate(ranks)}
    assert max_lora_rank(adapters) == expected


def test_a_rank_vllm_cannot_serve_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="rank 1024"):
        max_lora_rank({"big": make_adapter(tmp_path / "big", 1024)})


def test_cpu_command_serves_fp32_with_explicit_names_and_adapters(tmp_path):
    adapters = {"b": make_adapter(tmp_path / "b", 16), "a": make_adapter(tmp_path / "a")}
    cmd = ServerSpec("/m/smol", "smol", port=8123, adapters=adapters, eager=True,
                     extra_args=["--seed", "1"]).command()
    assert cmd[:4] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
    joined = " ".join(cmd)
    for part in ("--host 127.0.0.1 --port 8123", "--served-model-name smol", "--dtype float32",
                 "--enforce-eager", "--enable-lora --max-lora-rank 16",
                 f"--lora-modules a={tmp_path / 'a'} b={tmp_path / 'b'}"):
        assert part in joined
    assert cmd[-2:] == ["--seed", "1"]


def test_cuda_command_uses_vllm_serve_and_no_lora_flags_without_adapters():
    cmd = ServerSpec("org/model", "org/model", flavour="cuda").command()
    assert cmd[1:3] == ["serve", "org/model"] and cmd[0].endswith("vllm")
    assert "--enable-lora" not in cmd and "--dtype" not in cmd and "--enforce-eager" not in cmd


def test_served_name_is_a_folders_name_or_the_hub_id(tmp_path):
    assert served_name(str(tmp_path)) == tmp_path.name
    assert served_name("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_server_env_bounds_the_kv_cache_and_keeps_caches_in_the_data_home(tmp_path):
    env = server_env(tmp_path, 2, base={"PATH": "/bin"})
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm-cache")
    assert env["PATH"] == "/bin" and "VLLM_CPU_KVCACHE_SPACE" not in os.environ


class ScriptSpec(ServerSpec):
    """Runs a Python script in place of vLLM (same process handling, no model)."""

    script: str = ""

    def command(self):
        return [sys.executable, "-c", self.script]


# A stand-in server: /health answers 200, and it spawns a worker child the way vLLM does.
HEALTHY = textwrap.dedent("""
    import http.server, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("child", child.pid, flush=True)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", PORT), H).serve_forever()
""")


def server_for(script, tmp_path, port=None):
    spec = ScriptSpec("m", "m", port=port or free_port())
    spec.script = script.replace("PORT", str(spec.port))
    return VLLMServer(spec, dict(os.environ), tmp_path / "logs" / "server.log")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead for our purposes
        return f.read().split()[2] != "Z"


def test_wait_then_stop_ends_the_server_and_its_workers(tmp_path):
    server = server_for(HEALTHY, tmp_path)
    with server:
        assert server.wait_healthy(30) < 30
        time.sleep(0.2)
        child = int(server.log_path.read_text().split()[1])
        assert alive(server.pid) and alive(child)
    assert server.proc.returncode is not None
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


def test_a_server_that_exits_at_start_up_reports_its_log(tmp_path):
    server = server_for("import sys; print('no model here'); sys.exit(3)", tmp_path)
    server.start()
    with pytest.raises(BackendError, match=r"exited \(code 3\)(.|\n)*no model here"):
        server.wait_healthy(30)


def test_a_server_that_never_gets_healthy_times_out_and_is_stopped(tmp_path):
    server = server_for("import time; print('compiling', flush=True); time.sleep(600)", tmp_path)
    server.start()
    notes = []
    t = time.monotonic()
    with pytest.raises(BackendError, match="not ready within 2 s(.|\n)*compiling"):
        server.wait_healthy(2, progress=notes.append, every_s=0.5)
    # The fake server would sleep 600 s: returning well before proves the timeout works
    # (the bound is loose: on a loaded 2-core machine stopping it took 22 s once).
    assert time.monotonic() - t < 120 and notes and "waiting for the vLLM server" in notes[0]
    assert server.proc.returncode is not None


def test_start_refuses_a_port_that_already_answers(tmp_path):
    first = server_for(HEALTHY, tmp_path)
    with first:
        first.wait_healthy(30)
        with pytest.raises(ConfigError, match="already answers"):
            server_for(HEALTHY, tmp_path, port=first.spec.port).start()


def test_serve_llm_without_a_model_names_the_fix(tmp_path):
    env = dict(os.environ, TAILOR_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "agent", "serve-llm"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 2 and "run `tailor assets`" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_llm_passes_flags_after_double_dash_to_vllm(monkeypatch, tmp_path):
    import agent.llm.serving
    from agent.interfaces.cli import main

    seen = {}
    monkeypatch.setattr(agent.llm.serving, "serve_until_interrupted",
                        lambda settings, **kw: seen.update(kw) or 0)
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    assert main(["serve-llm", "--port", "8123", "--eager", "--",
                 "--quantization", "awq", "--tensor-parallel-size", "2"]) == 0
    assert seen["port"] == 8123 and seen["eager"] is True
    assert seen["extra_args"] == ["--quantization", "awq", "--tensor-parallel-size", "2"]


def test_a_quantized_model_on_cpu_is_served_without_lora_and_says_so(monkeypatch, tmp_path):
    import agent.llm.serving
    from agent.llm.serving import is_quantized, serve_until_interrupted
    from agent.settings import Settings

    model = tmp_path / "m-w8a8"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"quantization_config": {"format": "int8"}}))
    assert is_quantized(str(model)) and not is_quantized("HuggingFaceTB/SmolLM2-135M-Instruct")
    make_adapter(tmp_path / "home" / "adapters" / "ml")
    specs, said = [], []

    class Refused(Exception):
        pass

    def capture(spec, env, log_path):
        specs.append(spec)
        raise Refused  # stop before anything starts

    monkeypatch.setattr(agent.llm.serving, "vllm_flavour", lambda: "cpu")
    monkeypatch.setattr(agent.llm.serving, "VLLMServer", capture)
    with pytest.raises(Refused):
        serve_until_interrupted(Settings(home=tmp_path / "home", model=str(model)), log=said.append)
    assert specs[0].adapters == {} and "--enable-lora" not in specs[0].command()
    assert "cannot apply LoRA" in said[0]


def test_a_quantized_checkpoint_is_served_in_bf16_only_where_amx_needs_it(tmp_path, monkeypatch):
    import json

    import torch

    from agent.llm.serving import cpu_dtype

    plain, quant = tmp_path / "plain", tmp_path / "quant"
    for folder, config in ((plain, {}), (quant, {"quantization_config": {"format": "int8"}})):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert (cpu_dtype(str(plain)), cpu_dtype(str(quant))) == ("float32", "bfloat16")
    assert "--dtype bfloat16" in " ".join(ServerSpec(str(quant), "q").command())
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_dtype(str(quant)) == "float32"
