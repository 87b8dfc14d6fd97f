"""The OpenAI-compatible chat route (``POST /v1/chat/completions``): a bot platform that
calls OpenAI can call Tailor unchanged; the items also come back as structured data
under ``"tailor"``, and ``"stream": true`` sends server-sent chunks as the turn runs."""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from typing import Literal

from fastapi import Depends, FastAPI, Header
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from agent.errors import InputError
from agent.interfaces.api import ERRORS, ReplyOut, StrictIn, Turns
from agent.interfaces.sessions import check_session_id

log = logging.getLogger(__name__)


class ChatMessage(StrictIn):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None


class ChatCompletionIn(StrictIn):
    model: str | None = None
    messages: list[ChatMessage]
    user: str | None = Field(None, description="a session id (or the X-Tailor-Session header)")
    stream: bool = False



class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    finish_reason: str
    message: AssistantMessage


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TailorReply(ReplyOut):
    session: str | None


class ChatCompletionOut(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    tailor: TailorReply = Field(description="the reply as data: items, state, notices")


def add_chat_route(app: FastAPI, turns: Turns, authorize, model_name: str) -> None:
    """``POST /v1/chat/completions`` on ``app``: a named session (``user`` or the
    X-Tailor-Session header) is created on first use; without one, the earlier user
    messages build the state and the last one is answered."""
    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)],
              response_model=ChatCompletionOut, responses={**ERRORS, 200: {
                  "content": {"text/event-stream": {"schema": {  # one server-sent event
                      "type": "object", "required": ["data"], "properties": {"data": {
                          "type": "string", "description": "a chat.completion.chunk as JSON, "
                          "or [DONE] at the end"}}}}},
                  "description": "with stream=true: chat.completion.chunk events"}})
    def chat_completions(body: ChatCompletionIn,
                         x_tailor_session: str | None = Header(None)):
        """OpenAI's chat shape. With ``"stream": true`` the answer comes as server-sent
        ``chat.completion.chunk`` events: the first as soon as the picks are ranked
        (their items under ``"tailor"``), each pick's line once its explanation is
        written and checked, and a last one with the whole reply under ``"tailor"``."""
        users = [m.content or "" for m in body.messages if m.role == "user"]
        if not users:
            raise InputError("messages has no user message")
        session_id = x_tailor_session or body.user
        model = body.model or model_name
        if body.stream:
            return stream_completion(session_id, users, model)
        if session_id:
            check_session_id(session_id)
            turns.store.create(session_id)  # bots name their own sessions; made on first use
            reply = turns.run(session_id, users[-1])
        else:  # stateless: earlier user messages build the state, the last one is answered
            reply = turns.run(None, users[-1], turns.recommender.state_from(users[:-1]))
        data = reply.to_json()
        data.pop("timings_s", None)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply.text}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "tailor": {**data, "session": session_id},
        }

    def stream_completion(session_id: str | None, users: list[str], model: str):
        first, events, held = turns.open_stream(session_id, users)
        return StreamingResponse(sse_chunks(turns.store, first, events, held, session_id,
                                            users[-1], model), media_type="text/event-stream")


def sse_chunks(store, first, events, held, session_id, message, model):
    """The chunks of a streamed turn; releases the session's lock and the turn's
    admission when done."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(content: str | None = None, finish: str | None = None, **extra) -> str:
        delta = {"role": "assistant"} if content is None and finish is None else {}
        if content is not None:
            delta["content"] = content
        return "data: " + json.dumps({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}) + "\n\n"

    try:
        yield chunk()
        event, sent = first, 0
        for event in itertools.chain([first], events):
            if event.kind == "picks":  # the state line now, the picks' lines when final
                picks = event.reply.to_json()
                yield chunk(picks["text"].split("\n", 1)[0],
                            tailor={"items": picks["items"], "state": picks["state"]})
                sent = 1
            elif event.kind == "final":
                break
        reply = event.reply
        lines = reply.text.split("\n")
        yield chunk(("\n" if sent else "") + "\n".join(lines[sent:]))
        if session_id:
            store.save_turn(session_id, message, reply.to_json(), reply.state)
        data = reply.to_json()
        data.pop("timings_s", None)
        yield chunk(finish="stop", tailor={**data, "session": session_id})
        yield "data: [DONE]\n\n"
    except Exception:  # API edge: the stream ends with an error event, never a trace
        log.exception("streamed turn failed")
        yield "data: " + json.dumps({"error": {
            "message": "something went wrong on our side; please try again",
            "type": "server_error"}}) + "\n\n"
    finally:
        for h in held:
            h.release()
