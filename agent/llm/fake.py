"""A scripted backend for unit tests of the agent's logic (never used by a user)."""

from __future__ import annotations

from typing import Callable, Sequence

from agent.llm.base import Message


class FakeBackend:
    """Scores labels with ``scorer(messages, labels)`` and replies from a list in turn."""

    name = "fake"

    def __init__(self, scorer: Callable | None = None, replies: Sequence[str] = ()):
        self.scorer = scorer or (lambda messages, labels: [0.0] * len(labels))
        self.replies = list(replies)
        self.calls: list[tuple[str, object]] = []

    def label_logprobs(self, messages: Sequence[Message], labels: Sequence[str]) -> list[float]:
        self.calls.append(("label_logprobs", messages))
        return list(self.scorer(messages, labels))

    def generate(self, conversations, max_new_tokens: int) -> list[str]:
        self.calls.append(("generate", conversations))
        out = []
        for _ in conversations:
            out.append(self.replies.pop(0) if self.replies else "")
        return out
