"""Security basics, checked on the source tree with ``ast``: no unpickling of files
(``pickle.load``, ``torch.load`` without ``weights_only=True``, ``np.load`` with
pickles allowed), no ``trust_remote_code``, no unsafe YAML, ``eval``/``exec`` or
``shell=True``, no server bound to every interface, and the API key compared in
constant time. Each rule is also run on a bad snippet, so a rule that stopped
matching fails here too."""

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SKIP_DIRS = {".git", ".venv", "out", "build", "dist", "node_modules", "__pycache__"}
# Test code may name an open address on purpose (to check that serving refuses it).
NO_OPEN_BIND_DIRS = {"agent", "eval", "finetune", "bench", "examples", "prompts"}
UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
              ("cPickle", "load"), ("cPickle", "loads"), ("dill", "load"), ("dill", "loads"),
              ("joblib", "load"), ("marshal", "load"), ("marshal", "loads"),
              ("shelve", "open"), ("pd", "read_pickle"), ("pandas", "read_pickle")}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
OPEN_ADDRESSES = {"0.0.0.0", "::", "[::]"}
SECRET_NAMES = ("api_key", "apikey", "secret", "password", "passwd")
ADDRESS_KEYWORDS = {"host", "server_name", "bind", "listen", "default"}


def source_files() -> list[Path]:
    """Every ``.py`` file of the project (not the venv, caches or outputs)."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                   and not d.endswith(".egg-info")]
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return sorted(files)


def dotted(node: ast.AST) -> tuple[str, ...]:
    """``a.b.c`` as ``("a", "b", "c")``; ``()`` for anything that is not a plain name chain."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return (node.id, *reversed(names))
    return ()


def keyword(call: ast.Call, name: str):
    """The keyword argument's value node, or ``...`` when the call does not pass it."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return ...


def is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def call_problems(call: ast.Call, open_bind_rule: bool) -> list[str]:
    name = dotted(call.func)
    tail = name[-2:]
    found = []
    if tail in UNPICKLERS:
        found.append(f"{'.'.join(name)}: unpickling runs arbitrary code from the file")
    if tail == ("torch", "load") and not is_const(keyword(call, "weights_only"), True):
        found.append("torch.load without weights_only=True")
    if tail in {("np", "load"), ("numpy", "load")}:
        allow = keyword(call, "allow_pickle")
        if allow is not ... and not is_const(allow, False):
            found.append("np.load with allow_pickle")
    trust = keyword(call, "trust_remote_code")
    if trust is not ... and not is_const(trust, False):
        found.append("trust_remote_code is not False: it runs code shipped with a model")
    safetensors = keyword(call, "use_safetensors")
    if safetensors is not ... and not is_const(safetensors, True):
        found.append("use_safetensors is not True: .bin weights are pickles")
    if tail in {("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "full_load_all")}:
        found.append(f"{'.'.join(name)}: use yaml.safe_load")
    if tail in {("yaml", "load"), ("yaml", "load_all")}:
        loader = keyword(call, "Loader")
        if loader is ... or dotted(loader)[-1:] not in {("SafeLoader",), ("CSafeLoader",)}:
            found.append(f"{'.'.join(name)} without SafeLoader: use yaml.safe_load")
    if name in {("eval",), ("exec",), ("builtins", "eval"), ("builtins", "exec")}:
        found.append(f"{name[-1]}() runs arbitrary code")
    shell = keyword(call, "shell")
    if shell is not ... and not is_const(shell, False):
        found.append("subprocess with shell=True")
    if open_bind_rule:
        # "0.0.0.0" anywhere in a call; "::" only where it is clearly an address ("::" is
        # also what MovieLens files are split on).
        literals = [(None, v) for v in call.args] + [(kw.arg, kw.value) for kw in call.keywords]
        if any(isinstance(v, ast.Constant) and (v.value == "0.0.0.0" or (
                arg in ADDRESS_KEYWORDS and v.value in OPEN_ADDRESSES)) for arg, v in literals):
            found.append("binds to every network interface; default to 127.0.0.1")
    return found


def import_problems(node: ast.AST) -> list[str]:
    """Modules whose only job here would be unpickling; ``from torch import load``
    (which would hide ``torch.load`` calls from the rule above)."""
    if isinstance(node, ast.Import):
        mods = [a.name.split(".")[0] for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
        mods = [node.module.split(".")[0]]
        if node.module == "torch" and any(a.name == "load" for a in node.names):
            return ["from torch import load: call torch.load(..., weights_only=True)"]
    else:
        return []
    return [f"imports {m}: unpickling runs arbitrary code from the file"
            for m in mods if m in PICKLE_MODULES]


def key_compare_problems(tree: ast.AST) -> list[str]:
    """``==``/``!=`` on a name that holds a secret (API key, password): a timing leak."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq))
                                                 for op in node.ops):
            for side in (node.left, *node.comparators):
                parts = dotted(side)
                if parts and any(s in parts[-1].lower() for s in SECRET_NAMES):
                    found.append(f"line {node.lineno}: {'.'.join(parts)} compared with ==/!= "
                                 "(use hmac.compare_digest)")
    return found


def problems_in(source: str, open_bind_rule: bool = True, secrets_rule: bool = True) -> list[str]:
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found += [f"line {node.lineno}: {p}" for p in call_problems(node, open_bind_rule)]
        found += [f"line {node.lineno}: {p}" for p in import_problems(node)]
    if secrets_rule:
        found += key_compare_problems(tree)
    return found


BAD = {
    "pickle": "import pickle\nwith open(p, 'rb') as f:\n    pickle.load(f)",
    "pickle loads": "pickle.loads(data)",
    "pickle import": "import pickle as pk",
    "pickle from-import": "from pickle import loads",
    "torch from-import": "from torch import load",
    "bin weights": "AutoModel.from_pretrained(p, use_safetensors=False)",
    "joblib": "joblib.load('model.joblib')",
    "torch.load": "torch.load('optimizer.pt')",
    "torch.load weights_only=False": "torch.load(p, weights_only=False)",
    "torch.load map_location only": "torch.load(p, map_location='cpu')",
    "np.load pickle": "np.load(p, allow_pickle=True)",
    "trust_remote_code": "AutoModel.from_pretrained(p, trust_remote_code=True)",
    "trust_remote_code variable": "AutoModel.from_pretrained(p, trust_remote_code=flag)",
    "yaml.load": "yaml.load(text)",
    "yaml.load unsafe loader": "yaml.load(text, Loader=yaml.Loader)",
    "eval": "eval(user_text)",
    "shell": "subprocess.run(cmd, shell=True)",
    "open bind": "uvicorn.run(app, host='0.0.0.0')",
    "open bind positional": "serve(settings, '0.0.0.0', 80)",
    "gradio open bind": "app.launch(server_name='0.0.0.0')",
    "ipv6 open bind": "uvicorn.run(app, host='::')",
    "argparse open default": "p.add_argument('--host', default='0.0.0.0')",
    "key compare": "if given == api_key:\n    pass",
    "token compare": "ok = request.token != settings.secret_token",
}
GOOD = {
    "torch.load weights_only": "torch.load(p, weights_only=True, map_location='cpu')",
    "np.load": "np.load(p)",
    "safetensors": "AutoModel.from_pretrained(p, use_safetensors=True)",
    "torch import": "import torch\nfrom torch import nn",
    "trust off": "AutoModel.from_pretrained(p, trust_remote_code=False)",
    "safe yaml": "yaml.safe_load(text)\nyaml.load(text, Loader=yaml.SafeLoader)",
    "model.eval": "model = model.eval()",
    "subprocess list": "subprocess.run(['git', 'rev-parse', 'HEAD'], shell=False)",
    "local bind": "uvicorn.run(app, host='127.0.0.1')",
    "compare_digest": "hmac.compare_digest(given.encode(), api_key.encode())",
    "key is None": "if api_key is None:\n    pass",
    "dict keys": "assert set(d.keys()) == keys",
    "token ids": "if token == tokenizer.eos_token_id:\n    pass",
    "split on ::": "uid, age = line.split('::')",
}


@pytest.mark.parametrize("name", list(BAD))
def test_each_rule_catches_its_bad_pattern(name):
    assert problems_in(BAD[name]), name


@pytest.mark.parametrize("name", list(GOOD))
def test_safe_patterns_pass(name):
    assert problems_in(GOOD[name]) == [], name


def test_the_scan_covers_the_project():
    scanned = {p.relative_to(ROOT).as_posix() for p in source_files()}
    assert {"agent/interfaces/api.py", "agent/llm/local.py", "finetune/train.py", "eval/run.py",
            "tests/agent/interfaces/test_security.py"} <= scanned
    assert not any(s.startswith(".venv/") for s in scanned)


def test_no_unsafe_loading_remote_code_or_open_binds_in_the_source_tree():
    found = []
    for path in source_files():
        rel = path.relative_to(ROOT)
        is_test_code = rel.parts[0] == "tests"
        for p in problems_in(path.read_text(encoding="utf-8"),
                             open_bind_rule=rel.parts[0] in NO_OPEN_BIND_DIRS,
                             secrets_rule=not is_test_code):
            found.append(f"{rel}: {p}")
    assert found == []


def test_the_api_key_is_checked_with_compare_digest():
    """The API's keys (agent/interfaces/admission.py, which api.py authorizes with) are
    compared in constant time, against every key."""
    tree = ast.parse((ROOT / "agent" / "interfaces" / "admission.py").read_text(encoding="utf-8"))
    digests = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
               and dotted(n.func) == ("hmac", "compare_digest")]
    assert digests and any("key.encode()" in ast.unparse(n) for n in digests)
    api = (ROOT / "agent" / "interfaces" / "api.py").read_text(encoding="utf-8")
    assert "authorize = make_authorize(api_key" in api


def test_servers_bind_127_0_0_1_by_default():
    import inspect

    from agent.interfaces.app import launch
    from agent.interfaces.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve"]).host == "127.0.0.1"
    assert parser.parse_args(["demo"]).host == "127.0.0.1"
    assert inspect.signature(launch).parameters["host"].default == "127.0.0.1"
