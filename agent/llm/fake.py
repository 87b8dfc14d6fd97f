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

    def stream_many(self, conversations, max_new_tokens: int):
        """``generate``'s replies, yielded word by word, the rows interleaved."""
        self.calls.append(("stream_many", conversations))
        texts = [self.replies.pop(0) if self.replies else "" for _ in conversations]
        words = [t.split(" ") for t in texts]
        for step in range(max((len(w) for w in words), default=0)):
            for k, w in enumerate(words):
                if step < len(w):
                    yield k, (w[step] if step == 0 else " " + w[step])

    def generate_json(self, messages, schema: dict, max_new_tokens: int) -> str:
        """The next reply (tests script the JSON)."""
        self.calls.append(("generate_json", messages))
        return self.replies.pop(0) if self.replies else "{}"
