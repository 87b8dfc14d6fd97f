"""A scripted backend for unit tests of the agent's logic (never used by a user)."""

from __future__ import annotations

from typing import Callable, Sequence

from agent.errors import BackendError
from agent.llm.base import Message


class FakeBackend:
    """Scores labels with ``scorer(messages, labels)`` and replies from a list in turn.

    ``fail`` names methods that raise ``BackendError`` instead, as a real backend does
    when its model or server fails (e.g. ``fail={"label_logprobs"}``)."""

    name = "fake"

    def __init__(self, scorer: Callable | None = None, replies: Sequence[str] = (),
                 fail: Sequence[str] = ()):
        self.scorer = scorer or (lambda messages, labels: [0.0] * len(labels))
        self.replies = list(replies)
        self.fail = frozenset(fail)
        self.calls: list[tuple[str, object]] = []

    def _record(self, method: str, what) -> None:
        self.calls.append((method, what))
        if method in self.fail:
            raise BackendError(f"the fake backend's {method} fails (as scripted)")

    def label_logprobs(self, messages: Sequence[Message], labels: Sequence[str]) -> list[float]:
        self._record("label_logprobs", messages)
        return list(self.scorer(messages, labels))

    def generate(self, conversations, max_new_tokens: int) -> list[str]:
        self._record("generate", conversations)
        out = []
        for _ in conversations:
            out.append(self.replies.pop(0) if self.replies else "")
        return out

    def stream_many(self, conversations, max_new_tokens: int):
        """``generate``'s replies, yielded word by word, the rows interleaved."""
        self._record("stream_many", conversations)
        texts = [self.replies.pop(0) if self.replies else "" for _ in conversations]
        words = [t.split(" ") for t in texts]
        for step in range(max((len(w) for w in words), default=0)):
            for k, w in enumerate(words):
                if step < len(w):
                    yield k, (w[step] if step == 0 else " " + w[step])

    def generate_json(self, messages, schema: dict, max_new_tokens: int) -> str:
        """The next reply (tests script the JSON)."""
        self._record("generate_json", messages)
        return self.replies.pop(0) if self.replies else "{}"
