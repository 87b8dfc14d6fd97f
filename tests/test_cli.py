import subprocess
import sys

from agent.cli import main


def test_help_explains():
    out = subprocess.run([sys.executable, "-m", "agent.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("ask", "chat", "demo", "setup", "TAILOR_HOME", "TAILOR_MODEL"):
        assert word in out


def test_help_imports_no_heavy_library():
    code = ("import sys; from agent.cli import build_parser; build_parser(); "
            "print([m for m in ('torch', 'transformers', 'chromadb', 'gradio') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_empty_message_is_a_clear_error_before_loading_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    assert main(["ask", "   "]) == 2
    assert "the message is empty" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_unknown_setting_is_reported(monkeypatch, capsys):
    monkeypatch.setenv("TAILOR_MODLE", "x")
    assert main(["ask", "hi"]) == 2
    assert "unknown setting TAILOR_MODLE" in capsys.readouterr().err


def test_missing_data_names_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    assert main(["ask", "I loved Alien"]) == 2
    assert "tailor data" in capsys.readouterr().err


def test_dataset_and_adapter_also_follow_the_command():
    from agent.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["eval", "--dataset", "ml-1m"]).dataset == "ml-1m"
    assert parse(["--dataset", "ml-1m", "eval"]).dataset == "ml-1m"
    assert parse(["--dataset", "ml-1m", "eval", "--dataset", "ml-100k"]).dataset == "ml-100k"
    assert parse(["eval"]).dataset is None  # the setting's default then applies
    args = parse(["finetune", "--dataset", "ml-1m", "--config", "cpu-smollm2-135m"])
    assert (args.dataset, args.config) == ("ml-1m", "cpu-smollm2-135m")
    assert parse(["ask", "hi", "--adapter", "a", "--dataset", "ml-1m"]).adapter == "a"
    assert parse(["data", "ml-1m"]).dataset == "ml-1m"  # the positional is untouched
