"""Prompt templates, one file each, loaded by name.

Templates use ``string.Template`` placeholders (``$name``) so JSON and braces
inside prompts need no escaping. Every loaded prompt carries the SHA-256 of
its file, which reports and adapters record.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    sha256: str

    def render(self, **values) -> str:
        """Fill every ``$placeholder``; a missing value is an error, never left blank."""
        try:
            return string.Template(self.text).substitute(**values)
        except KeyError as e:
            raise KeyError(f"prompt {self.name!r} needs a value for {e}") from None

    def json(self):
        return json.loads(self.text)


@lru_cache(maxsize=None)
def load_prompt(name: str) -> Prompt:
    """Load ``prompts/<name>`` (``.txt`` or ``.json``)."""
    folder = resources.files(__name__)
    for ext in (".txt", ".json"):
        f = folder / f"{name}{ext}"
        if f.is_file():
            text = f.read_text(encoding="utf-8")
            return Prompt(name, text.rstrip("\n"), hashlib.sha256(text.encode()).hexdigest())
    raise FileNotFoundError(f"no prompt named {name!r} in {folder}")


def prompt_hashes(names) -> dict[str, str]:
    return {n: load_prompt(n).sha256 for n in names}
