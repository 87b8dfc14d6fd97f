"""A ``ChatBackend`` over an OpenAI-compatible server (vLLM's, from ``tailor serve-llm``).

The prompts are the same messages the in-process backend gets; the server
applies the model's own chat template, so both score the same token sequence.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

from agent.errors import BackendError
from agent.llm.base import Message

TOP_LOGPROBS = 20  # the most the OpenAI API allows; vLLM's default --max-logprobs too


def api_urls(url: str) -> tuple[str, str]:
    """``(base_url for the client, server root)`` from a URL with or without ``/v1``.

    >>> api_urls("http://127.0.0.1:8000")
    ('http://127.0.0.1:8000/v1', 'http://127.0.0.1:8000')
    >>> api_urls("http://127.0.0.1:8000/v1/")
    ('http://127.0.0.1:8000/v1', 'http://127.0.0.1:8000')
    """
    url = url.rstrip("/")
    root = url[: -len("/v1")] if url.endswith("/v1") else url
    return root + "/v1", root


def label_scores(top: dict[str, float], labels: Sequence[str]) -> tuple[list[float], int]:
    """Each label's log-probability from a ``{token: logprob}`` top list.

    A label missing from the list gets the list's lowest log-probability (its
    true value is at most that). Returns the scores and how many were floored.

    >>> label_scores({"A": -0.5, "The": -1.0, "B": -2.0}, ["A", "B", "C"])
    ([-0.5, -2.0, -2.0], 1)
    """
    if not top:
        raise BackendError("the server returned no log-probabilities; ranking needs a server "
                           "that supports `logprobs` and `top_logprobs`")
    floor = min(top.values())
    scores = [top.get(label, floor) for label in labels]
    return scores, sum(label not in top for label in labels)


class OpenAIBackend:
    """Chat model behind an OpenAI-compatible HTTP API.

    ``label_logprobs`` asks for one token with ``logprobs`` and
    ``top_logprobs=20`` and reads each label's log-probability off that list.
    On a vLLM server it also sends the labels' token ids as
    ``logprob_token_ids`` (ids from the server's ``/tokenize``), so every label
    comes back with its exact value; on other servers a label outside the
    top 20 gets the lowest listed log-probability as a floor (an upper bound:
    such labels tie at the bottom of the ranking).

    Failures (unreachable, slower than ``timeout``, HTTP errors) raise
    ``BackendError``, which the recommender turns into retrieval order plus a
    notice. After a connection failure or a timeout the backend fails fast for
    ``cooldown_s`` so that one turn never waits for a dead server twice.

    Args:
        url: the server's URL, with or without ``/v1``.
        model: the served model or LoRA adapter name to ask for (never guessed).
        timeout: seconds per request, connection included.
        cooldown_s: how long to fail fast after the server was unreachable or too slow.
        client: an ``openai.OpenAI``-like object (unit tests pass a fake).
        tokenize: ``text -> token ids`` for the labels; default asks vLLM's ``/tokenize``.
        concurrency: ranking requests in flight at once in ``label_logprobs_many``.
    """

    def __init__(self, url: str, model: str, timeout: float = 4.0, cooldown_s: float = 30.0,
                 client=None, tokenize: Callable[[str], list[int] | None] | None = None,
                 concurrency: int = 32):
        if not model:
            raise BackendError("an OpenAI-compatible backend needs an explicit model or adapter name")
        self.base_url, self.root = api_urls(url)
        self.name = model
        self.timeout, self.cooldown_s = timeout, cooldown_s
        if client is None:
            from openai import OpenAI

            # Retries would multiply the timeout; the recommender has its own fallback.
            client = OpenAI(base_url=self.base_url, api_key="EMPTY", timeout=timeout,
                            max_retries=0)
        self.client = client
        self.tokenize = tokenize or self._vllm_tokenize
        self._counts = tokenize is None  # count prompt tokens through /tokenize too
        self._label_ids: dict[tuple[str, ...], list[int] | None] = {}
        self._down_until = 0.0
        self.floored = 0  # labels scored with the floor in the last label_logprobs call
        self.concurrency = max(1, concurrency)

    # HTTP ----------------------------------------------------------------------
    def _call(self, fn: Callable, what: str):
        """Run one API call, mapping every failure to ``BackendError``."""
        import httpx
        import openai

        self._fail_fast()
        try:
            return fn()
        except openai.APITimeoutError:
            raise self._outage(what, timed_out=True) from None
        except openai.APIConnectionError as e:
            raise self._outage(str(e)) from None
        except openai.NotFoundError:
            raise BackendError(f"the server at {self.base_url} does not serve a model named "
                               f"{self.name!r}; check TAILOR_LLM_MODEL / TAILOR_ADAPTER against "
                               f"{self.base_url}/models") from None
        except openai.APIStatusError as e:
            raise BackendError(f"the LLM server at {self.base_url} answered HTTP "
                               f"{e.status_code} to {what}: {str(e)[:300]}") from None
        except openai.APIError as e:  # e.g. a response that does not parse
            raise BackendError(f"the LLM server at {self.base_url} sent a bad answer to "
                               f"{what}: {str(e)[:300]}") from None
        except (httpx.TransportError, OSError) as e:  # a stream cut between chunks
            raise self._outage(f"{what}: {e}") from None

    def _outage(self, detail: str, timed_out: bool = False) -> BackendError:
        """Start the fail-fast period and describe what happened."""
        self._down_until = time.monotonic() + self.cooldown_s
        if timed_out:
            return BackendError(f"the LLM server at {self.base_url} did not answer {detail} "
                                f"within {self.timeout:g} s (TAILOR_LLM_TIMEOUT)")
        return BackendError(f"cannot reach the LLM server at {self.base_url} ({detail}); "
                            "is `tailor serve-llm` running?")

    def _fail_fast(self) -> None:
        if time.monotonic() < self._down_until:
            raise BackendError(f"the LLM server at {self.base_url} failed moments ago; "
                               f"not retrying for {self._down_until - time.monotonic():.0f} s")

    def _vllm_tokenize(self, text: str) -> list[int] | None:
        """Token ids from vLLM's ``/tokenize``; None when the server has no such endpoint."""
        out = self._post_tokenize({"prompt": text, "add_special_tokens": False})
        return None if out is None else list(out["tokens"])

    def count_tokens(self, messages: Sequence[Message]) -> int | None:
        """Prompt tokens of ``messages`` under the served chat template (vLLM's
        ``/tokenize`` with messages); None when the server cannot say."""
        if not self._counts:
            return None
        self._fail_fast()
        out = self._post_tokenize({"messages": list(messages), "add_generation_prompt": True})
        if out is None:
            self._counts = False  # not vLLM: do not ask again
            return None
        return int(out["count"])

    def _post_tokenize(self, fields: dict) -> dict | None:
        body = json.dumps({"model": self.name, **fields}).encode()
        req = urllib.request.Request(self.root + "/tokenize", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError:
            return None  # not vLLM: fall back to the top-20 list alone
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                raise self._outage("a tokenize request", timed_out=True) from None
            raise self._outage(str(reason)) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise BackendError(f"the LLM server at {self.base_url} answered /tokenize with "
                               f"something that is not JSON: {raw[:100]!r}") from None

    def label_ids(self, labels: Sequence[str]) -> list[int] | None:
        """Token id of each label (each must be one token), or None if unknown."""
        key = tuple(labels)
        if key not in self._label_ids:
            ids = []
            for label in labels:
                toks = self.tokenize(label)
                if toks is None:
                    ids = None
                    break
                if len(toks) != 1:
                    raise BackendError(f"label {label!r} is {len(toks)} tokens for this model")
                ids.append(toks[0])
            self._label_ids[key] = ids
        return self._label_ids[key]

    # ChatBackend ---------------------------------------------------------------
    def label_logprobs(self, messages: Sequence[Message], labels: Sequence[str]) -> list[float]:
        scores, self.floored = self._label_request(messages, labels)
        return scores

    def label_logprobs_many(self, conversations: Sequence[Sequence[Message]],
                            labels: Sequence[Sequence[str]]) -> list[list[float]]:
        """Many ranking prompts as concurrent requests (at most ``concurrency`` in
        flight), which vLLM batches on the accelerator; results in input order."""
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(len(conversations), self.concurrency)) as pool:
            out = list(pool.map(self._label_request, conversations, labels))
        self.floored = sum(f for _, f in out)
        return [scores for scores, _ in out]

    def _label_request(self, messages: Sequence[Message],
                       labels: Sequence[str]) -> tuple[list[float], int]:
        self._fail_fast()
        ids = self.label_ids(labels)
        extra = {"logprob_token_ids": ids} if ids else None
        resp = self._call(lambda: self.client.chat.completions.create(
            model=self.name, messages=list(messages), max_tokens=1, temperature=0.0,
            logprobs=True, top_logprobs=TOP_LOGPROBS, extra_body=extra), "a ranking request")
        try:
            entries = resp.choices[0].logprobs.content[0].top_logprobs
        except (AttributeError, IndexError, TypeError):
            entries = []
        return label_scores({e.token: e.logprob for e in entries}, labels)

    def generate(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        if not conversations:
            return []

        def one(conv):
            resp = self._call(lambda: self.client.chat.completions.create(
                model=self.name, messages=list(conv), max_tokens=max_new_tokens,
                temperature=0.0), "a generation request")
            return self._text(resp, "a generation request")

        # Concurrent requests let the server batch them.
        with ThreadPoolExecutor(max_workers=min(len(conversations), 8)) as pool:
            return list(pool.map(one, conversations))

    def generate_json(self, messages: Sequence[Message], schema: dict, max_new_tokens: int) -> str:
        """Text that follows the JSON ``schema``, through the server's structured outputs
        (OpenAI's ``response_format`` of type ``json_schema``; vLLM enforces it with a
        grammar)."""
        resp = self._call(lambda: self.client.chat.completions.create(
            model=self.name, messages=list(messages), max_tokens=max_new_tokens,
            temperature=0.0, response_format={"type": "json_schema", "json_schema": {
                "name": "form", "schema": schema, "strict": True}}),
            "a structured-output request")
        return self._text(resp, "a structured-output request")

    def _text(self, resp, what: str) -> str:
        """The reply's text; a response without one is the server's failure."""
        try:
            return (resp.choices[0].message.content or "").strip()
        except (AttributeError, IndexError, TypeError):
            raise BackendError(f"the LLM server at {self.base_url} answered {what} "
                               "without a message") from None

    def stream(self, messages: Sequence[Message], max_new_tokens: int) -> Iterator[str]:
        """Yield the reply's text piece by piece as the server produces it."""
        chunks = self._call(lambda: self.client.chat.completions.create(
            model=self.name, messages=list(messages), max_tokens=max_new_tokens,
            temperature=0.0, stream=True), "a streaming request")
        it = iter(chunks)
        finished = False
        while True:
            chunk = self._call(lambda: next(it, None), "a streamed chunk")
            if chunk is None:
                break
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
            finished = finished or bool(chunk.choices and chunk.choices[0].finish_reason)
        if not finished:  # a connection cut between chunks can look like a normal end
            raise BackendError(f"the LLM server at {self.base_url} ended a stream early")

    def stream_many(self, conversations: Sequence[Sequence[Message]],
                    max_new_tokens: int) -> Iterator[tuple[int, str]]:
        """``stream`` for several conversations at once (concurrent requests, which the
        server batches); yields ``(conversation index, new text)`` as pieces arrive.
        The first failure is raised once every request has ended."""
        out: queue.Queue = queue.Queue()

        def one(k, conv):
            try:
                for piece in self.stream(conv, max_new_tokens):
                    out.put((k, piece))
            except BaseException as e:  # handed to the consumer
                out.put(e)
            finally:
                out.put(None)

        for k, conv in enumerate(conversations):
            threading.Thread(target=one, args=(k, conv), daemon=True,
                             name=f"tailor-stream-{k}").start()
        running, error = len(conversations), None
        while running:
            got = out.get()
            if got is None:
                running -= 1
            elif isinstance(got, BaseException):
                error = error or got
            else:
                yield got
        if error is not None:
            raise error
