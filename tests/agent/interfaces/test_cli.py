import subprocess
import sys

import pytest

from agent.interfaces.cli import main


def test_help_explains():
    out = subprocess.run([sys.executable, "-m", "agent", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("ask", "chat", "demo", "setup", "TAILOR_HOME", "TAILOR_MODEL"):
        assert word in out


def test_help_imports_no_heavy_library():
    code = ("import sys; from agent.interfaces.cli import build_parser; build_parser(); "
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


@pytest.mark.parametrize("args, says", [
    (["eval", "--withheld", "0"], "--withheld needs 1 or more titles, not 0"),
    (["eval", "--systems", "tailor", "--fusion-users", "0"], "--fusion-users must be 1 or more"),
])
def test_eval_counts_below_one_are_clear_errors_before_any_work(tmp_path, capsys, monkeypatch,
                                                                 args, says):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    assert main(args) == 2
    assert says in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_missing_data_names_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    assert main(["ask", "I loved Alien"]) == 2
    assert "tailor data" in capsys.readouterr().err


def test_dataset_and_adapter_also_follow_the_command():
    from agent.interfaces.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["eval", "--dataset", "ml-1m"]).dataset == "ml-1m"
    assert parse(["--dataset", "ml-1m", "eval"]).dataset == "ml-1m"
    assert parse(["--dataset", "ml-1m", "eval", "--dataset", "ml-100k"]).dataset == "ml-100k"
    assert parse(["eval"]).dataset is None  # the setting's default then applies
    args = parse(["finetune", "--dataset", "ml-1m", "--config", "cpu-smollm2-135m"])
    assert (args.dataset, args.config) == ("ml-1m", "cpu-smollm2-135m")
    assert parse(["ask", "hi", "--adapter", "a", "--dataset", "ml-1m"]).adapter == "a"
    assert parse(["data", "ml-1m"]).dataset == "ml-1m"  # the positional is untouched


def test_help_lists_every_setting():
    from dataclasses import fields

    from agent.settings import Settings

    out = subprocess.run([sys.executable, "-m", "agent", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for f in fields(Settings):
        assert f"TAILOR_{f.name.upper()}" in out
    assert "TAILOR_STATE_LLM" in out and "TAILOR_EMBEDDER" in out


def test_eval_help_explains_the_seed_and_shows_defaults(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--seed SEED random seed" in out and "(default: 0)" in out
    assert "default 20 on MovieLens, 0 on an imported catalog" in out  # --dialogues


def test_global_options_go_before_or_after_any_command():
    from agent.interfaces.cli import GLOBAL_OPTIONS, build_parser

    parse = build_parser().parse_args
    assert parse(["chat", "--explain", "llm"]).explain == "llm"  # as the README writes it
    assert parse(["--explain", "llm", "chat"]).explain == "llm"
    assert parse(["--explain", "template", "chat", "--explain", "llm"]).explain == "llm"
    assert parse(["chat"]).explain is None and parse(["chat"]).verbose is False
    assert parse(["chat", "-v"]).verbose is True
    args = parse(["ask", "hi", "--home", "/h", "--rank-mode", "zero", "--model", "m"])
    assert (args.message, args.home, args.rank_mode, args.model) == ("hi", "/h", "zero", "m")
    # every command takes every global option after it, except where it has its own
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        flags = {o for a in parser._actions for o in a.option_strings}
        for option, _ in GLOBAL_OPTIONS:
            if (name, option[-1]) not in (("data", "--dataset"), ("finetune-report", "--adapter")):
                assert option[-1] in flags, (name, option)
    assert "--dataset" not in sub.choices["data"].format_usage()  # its positional instead
    assert parse(["serve-llm", "--model", "x", "--", "--quantization", "awq"]).model == "x"
    assert parse(["finetune-report", "--adapter", "a", "--explain", "llm"]).adapter == "a"


def test_chat_ends_on_quit_words_and_eof(catalog, monkeypatch, capsys, tmp_path):
    import io

    import agent.interfaces.commands as commands
    from agent.llm.fake import FakeBackend
    from tests.agent.turn.test_recommender import make

    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    monkeypatch.setattr(commands, "_recommender", lambda settings: make(catalog, FakeBackend()))
    for word in ("quit", "  EXIT ", ":q", "Bye", "QUIT"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(f"I loved Alien\n{word}\nsci-fi please\n"))
        assert main(["chat"]) == 0
        out = capsys.readouterr().out
        assert out.count("Looking for") == 1, word  # the quit word is no request
    # Ctrl-D (end of input) ends cleanly too, after answering what came before it
    monkeypatch.setattr(sys, "stdin", io.StringIO("I loved Alien\nsci-fi please"))
    assert main(["chat"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("Looking for") == 2 and "Traceback" not in captured.err
    # a message that merely contains a quit word is still a request
    echo = Echo()
    monkeypatch.setattr(commands, "_recommender", lambda settings: echo)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a film to quit my job over\n"))
    assert main(["chat"]) == 0 and echo.asked == ["a film to quit my job over"]


class Echo:
    """A recommender that records what it is asked and answers "ok"."""
    explain_mode = "template"

    def __init__(self):
        self.asked = []

    def turn_stream(self, message, state, stream=False):
        from types import SimpleNamespace

        self.asked.append(message)
        yield SimpleNamespace(kind="final", reply=SimpleNamespace(text="ok", notices=(),
                                                                  state=state))


def test_the_bitsandbytes_kernels_warning_is_silenced_and_no_other():
    code = ("import logging, sys, agent.interfaces.cli as c\n"
            "def fake(settings, args):\n"
            "    import bitsandbytes\n"
            "    logging.getLogger('bitsandbytes.backends.cpu.ops').warning('another warning')\n"
            "    return 0\n"
            "c.cmd_assets = fake\n"
            "sys.exit(c.main(['assets']))\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stderr
    assert "No module named 'kernels'" not in err and "another warning" in err
