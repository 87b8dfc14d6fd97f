"""The seam between the agent and any language model."""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


class ChatBackend(Protocol):
    """What the agent needs from a chat model.

    ``label_logprobs`` is the verbalizer: one forward pass over the prompt,
    then the log-probability of each label (``"A"``, ``"B"``, ...) as the first
    token of the assistant's reply. ``generate`` writes short free text;
    ``stream_many`` writes the same text, yielding ``(conversation index, new
    text)`` pieces as they are decoded. ``generate_json`` writes text that follows
    a JSON schema, enforced while decoding. ``label_logprobs_many`` (optional; see
    ``label_logprobs_many`` below) scores many prompts at once, as an evaluation does.
    """

    name: str

    def label_logprobs(self, messages: Sequence[Message], labels: Sequence[str]) -> list[float]:
        ...

    def generate(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        ...

    def stream_many(self, conversations: Sequence[Sequence[Message]],
                    max_new_tokens: int) -> Iterator[tuple[int, str]]:
        ...

    def generate_json(self, messages: Sequence[Message], schema: dict, max_new_tokens: int) -> str:
        ...


def label_logprobs_many(backend, conversations: Sequence[Sequence[Message]],
                        labels: Sequence[Sequence[str]]) -> list[list[float]]:
    """``label_logprobs`` for many prompts: through the backend's own batched
    ``label_logprobs_many`` where it has one (a server batches concurrent requests),
    else one prompt after another."""
    many = getattr(backend, "label_logprobs_many", None)
    if many is not None:
        return many(conversations, labels)
    return [backend.label_logprobs(m, ls) for m, ls in zip(conversations, labels)]
