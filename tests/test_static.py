"""Names that do not exist fail here, not at the end of a 30-minute fine-tuning run
(``n_params`` went missing from both recipes' metadata in a refactor, and only a real
``tailor finetune`` found it). pyflakes reads the source; nothing is imported or run."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "eval", "finetune", "bench", "prompts", "tests")
ERRORS = ("UndefinedName", "UndefinedLocal", "UndefinedExport")


def undefined_names(path: Path) -> list[str]:
    from pyflakes.api import check
    from pyflakes.reporter import Reporter

    class Collect(Reporter):
        def __init__(self):
            self.found = []

        def flake(self, message):
            if type(message).__name__ in ERRORS:
                self.found.append(str(message))

        def syntaxError(self, filename, msg, lineno, offset, text):
            self.found.append(f"{filename}:{lineno}: syntax error: {msg}")

        def unexpectedError(self, filename, msg):
            self.found.append(f"{filename}: {msg}")

    reporter = Collect()
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    check(path.read_text(), str(name), reporter)
    return reporter.found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_undefined_names(package):
    found = [m for f in sorted((ROOT / package).rglob("*.py")) for m in undefined_names(f)]
    assert not found, "\n".join(found)


def test_an_undefined_name_is_found(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import os\n\n\ndef f():\n    return n_params\n")
    assert [m.split(": ", 1)[1] for m in undefined_names(planted)] == [
        "undefined name 'n_params'"]  # an unused import is not this test's business
