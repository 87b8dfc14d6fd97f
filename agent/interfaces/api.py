"""HTTP API for bots and apps (`tailor serve`): FastAPI over ``Recommender.turn``.

Sessions and feedback live in SQLite (``agent.interfaces.sessions``), so they survive a
restart. ``POST /v1/chat/completions`` speaks the OpenAI chat shape, so a bot
platform that calls OpenAI can call Tailor unchanged; the items also come back
as structured data under ``"tailor"``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
import uuid
from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.errors import InputError
from agent.interfaces.admission import (Admission, SessionLocks, add_stats_route, admit,
                                        make_authorize)
from agent.interfaces.sessions import SessionStore, check_session_id, open_store
from agent.understand.parse import MAX_MESSAGE_CHARS

log = logging.getLogger(__name__)
SESSION_HEADER = "X-Tailor-Session"


class StrictIn(BaseModel):
    """A request body: no coercion. ``true``, ``1.0`` or ``"1"`` is not an item id, and
    ``"yes"`` or ``1`` is not a bool; such a body is a 422, not a guess."""

    model_config = ConfigDict(strict=True)


class MessageIn(StrictIn):
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS,
                         description="what the user said (not blank)")


class FeedbackIn(StrictIn):
    item_id: int = Field(description="a catalog item id from a reply's items")
    value: Literal["like", "dislike"]


class ChatMessage(StrictIn):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None


class ChatCompletionIn(StrictIn):
    model: str | None = None
    messages: list[ChatMessage]
    user: str | None = Field(None, description="a session id (or the X-Tailor-Session header)")
    stream: bool = False


class ItemOut(BaseModel):
    id: int
    title: str
    year: int | None
    genres: list[str]
    director: list[str]
    external_id: str | None = Field(default=None, description="an imported catalog's own id "
                                    "(a SKU); null for MovieLens")
    attrs: dict = Field(default={}, description="the item's fields by its catalog schema's "
                        "names (MovieLens: year, genres, cast ...; a shop: price, brand ...)")
    facts: dict = Field(default={}, description="the catalog schema's fact fields of this "
                        "item, by name, empty ones left out: the same shape for any catalog "
                        "(MovieLens: year, genres, director ...; a shop: price, brand ...)")
    score: float
    explanation: str = Field(description="why this pick, checked against the catalog")
    explanation_source: Literal["llm", "template", "pending"]


class StateOut(BaseModel):
    liked: list[int]
    disliked: list[int]
    genres: list[str]
    excluded_genres: list[str]
    year_min: int | None
    year_max: int | None
    shown: list[int]
    query: str
    tail_boost: float | None
    last: list[int]
    genre_or: bool = False
    people: list[str] = []
    excluded_people: list[str] = []
    moods: list[str] = []
    like_genres: list[str] = []
    outside: list[str] = []
    not_found: list[str] = []
    lesser_known: bool = False
    well_liked: bool = False
    facets: list[tuple[str, str]] = Field(default=[], description="an imported catalog's facet "
                                          "values asked for: [field, value]")
    excluded_facets: list[tuple[str, str]] = []
    bounds: list[tuple[str, float | None, float | None]] = Field(
        default=[], description="[field, low, high] of a range facet, e.g. a price")


class ReplyOut(BaseModel):
    text: str
    items: list[ItemOut] = Field(description="catalog items only, best first")
    state: StateOut
    notices: list[str] = Field(description="e.g. that the ranking model was unavailable")


class SessionOut(BaseModel):
    id: str


class FeedbackOut(BaseModel):
    ok: bool
    state: StateOut


class HealthOut(BaseModel):
    status: str
    model: str


class ErrorBody(BaseModel):
    message: str
    type: str


class ErrorOut(BaseModel):
    error: ErrorBody


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


ERRORS = {status: {"model": ErrorOut, "description": what} for status, what in (
    (400, "bad input; the message says what to fix"), (401, "missing or wrong API key"),
    (422, "a body that does not parse or fit the schema"), (500, "a failure on our side"))}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


def create_app(recommender, store: SessionStore, api_key: str | None, model_name: str,
               live=None, admission: Admission | None = None,
               rate_limit: float = 0.0) -> FastAPI:
    """The API. ``api_key=None`` serves without authentication (127.0.0.1 only: the
    ``tailor serve`` command refuses other addresses without a key). ``live``: an
    ``agent.data.live.LiveCatalog`` for the catalog endpoints (none without it).
    ``admission``: how many turns run and wait at once (None: no limit). ``api_key``: one
    key or several, comma-separated; ``rate_limit``: turns a minute per key (0: none)."""
    app = FastAPI(title="Tailor", version="1", description="Conversational movie recommendations "
                  "from the catalog only. Authenticate with `Authorization: Bearer <key>`.")
    locks = SessionLocks(store)

    authorize = make_authorize(api_key, rate_limit)  # bearer keys; each key's rate of turns

    @app.exception_handler(StarletteHTTPException)  # ours and the framework's (unparsable body)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = {401: "authentication_error", 404: "not_found",
                429: "overloaded"}.get(exc.status_code, "invalid_request")
        return JSONResponse(status_code=exc.status_code, headers=exc.headers,
                            content={"error": {"message": str(exc.detail), "type": kind}})

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError):
        return _error(400, str(exc), "invalid_request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # API edge: log, never a trace
        log.exception("request failed")
        return _error(500, "something went wrong on our side; please try again", "server_error")

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(422, f"invalid request body: {where}"[:500], "invalid_request")

    if live is not None:
        from agent.interfaces.catalog_api import add_catalog_routes

        add_catalog_routes(app, live, authorize)

    add_stats_route(app, getattr(recommender, "backend", None), admission, authorize)

    @app.get("/health", response_model=HealthOut)
    def health() -> dict:
        return {"status": "ok", "model": model_name}

    @app.post("/v1/sessions", dependencies=[Depends(authorize)], response_model=SessionOut,
              responses=ERRORS)
    def new_session() -> dict:
        return {"id": store.create()}

    def known(session_id: str) -> str:
        check_session_id(session_id)
        if not store.exists(session_id):
            raise HTTPException(404, f"no session {session_id!r}; create one with POST /v1/sessions")
        return session_id

    def run_turn(session_id: str | None, content: str, state=None):
        ticket = admit(admission)
        try:
            if session_id is None:  # stateless: the caller's state
                return recommender.turn(content, state)
            with locks(session_id):
                reply = recommender.turn(content, store.load(session_id))
                store.save_turn(session_id, content, reply.to_json(), reply.state)
            return reply
        finally:
            ticket.release()

    not_found = {**ERRORS, 404: {"model": ErrorOut, "description": "no such session"}}

    @app.post("/v1/sessions/{session_id}/messages", dependencies=[Depends(authorize)],
              response_model=ReplyOut, responses=not_found)
    def message(session_id: str, body: MessageIn) -> dict:
        """One turn: ``{"text", "items": [...], "state", "notices"}``."""
        reply = run_turn(known(session_id), body.content)
        out = reply.to_json()
        out.pop("timings_s", None)
        return out

    @app.post("/v1/sessions/{session_id}/feedback", dependencies=[Depends(authorize)],
              response_model=FeedbackOut, responses=not_found)
    def feedback(session_id: str, body: FeedbackIn) -> dict:
        """Like or dislike an item; stored before this answers, and the next turn uses it."""
        if body.item_id not in recommender.catalog:
            raise InputError(f"item {body.item_id} is not in the catalog")
        with locks(known(session_id)):
            state = store.add_feedback(session_id, body.item_id, body.value)
        return {"ok": True, "state": state.to_dict()}

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
            store.create(session_id)  # bots name their own sessions; created on first use
            reply = run_turn(session_id, users[-1])
        else:  # stateless: earlier user messages build the state, the last one is answered
            reply = run_turn(None, users[-1], recommender.state_from(users[:-1]))
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
        if session_id:
            check_session_id(session_id)
            store.create(session_id)
            lock, state = locks(session_id), None
        else:
            lock, state = threading.Lock(), recommender.state_from(users[:-1])
        ticket = admit(admission)  # held until the stream ends
        lock.acquire()
        try:
            if session_id:
                state = store.load(session_id)
            events = recommender.turn_stream(users[-1], state)
            first = next(events)  # bad input raises here, before any byte is sent: a 400
        except BaseException:
            lock.release()
            ticket.release()
            raise
        return StreamingResponse(sse_chunks(first, events, (lock, ticket), session_id,
                                            users[-1], model), media_type="text/event-stream")

    def sse_chunks(first, events, held, session_id, message, model):
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

    return app


def serve(settings, host: str, port: int, log_fn=print) -> None:
    """Run the API with uvicorn (one process; turns run in its thread pool)."""
    import uvicorn

    from agent.build import build_recommender
    from agent.errors import ConfigError
    from agent.settings import LOOPBACK

    if host not in LOOPBACK and not settings.api_key:
        raise ConfigError(f"refusing to serve on {host} without TAILOR_API_KEY: anyone who can "
                          "reach it could use it; set a key or bind 127.0.0.1")
    if not settings.api_key:
        log_fn("no TAILOR_API_KEY set: serving without authentication on 127.0.0.1")
    from agent.data.live import LiveCatalog

    recommender = build_recommender(settings, log=log_fn)
    retriever = recommender.retriever
    live = LiveCatalog(recommender.catalog, settings.data_dir(), retriever.collection,
                       retriever.embedder)
    admission = Admission(settings.max_inflight or os.cpu_count() or 1, settings.max_queue)
    app = create_app(recommender, open_store(settings), settings.api_key,
                     getattr(recommender.backend, "name", "tailor"), live, admission,
                     settings.rate_limit)
    log_fn(f"Tailor API on http://{host}:{port} (OpenAPI schema at /openapi.json, docs at /docs); "
           f"{admission.max_inflight} turns at once, {admission.max_queue} waiting, then 429")
    uvicorn.run(app, host=host, port=port, log_level="warning")
