"""HTTP API for bots and apps (`tailor serve`): FastAPI over ``Recommender.turn``.

Sessions and feedback live in SQLite (``agent.interfaces.sessions``), so they survive a
restart. ``POST /v1/chat/completions`` speaks the OpenAI chat shape
(``agent.interfaces.chat_api``), and the catalog endpoints upsert and hide items and
log interactions (``agent.interfaces.catalog_api``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


ERRORS = {status: {"model": ErrorOut, "description": what} for status, what in (
    (400, "bad input; the message says what to fix"), (401, "missing or wrong API key"),
    (422, "a body that does not parse or fit the schema"), (500, "a failure on our side"))}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


class Turns:
    """Turns as the API runs them: each admitted (``admission``: how many run and wait
    at once), one at a time per session, saved to the session when done."""

    def __init__(self, recommender, store: SessionStore, admission: Admission | None):
        self.recommender, self.store, self.admission = recommender, store, admission
        self.locks = SessionLocks(store)

    def known(self, session_id: str) -> str:
        check_session_id(session_id)
        if not self.store.exists(session_id):
            raise HTTPException(404, f"no session {session_id!r}; create one with POST /v1/sessions")
        return session_id

    def run(self, session_id: str | None, content: str, state=None):
        ticket = admit(self.admission)
        try:
            if session_id is None:  # stateless: the caller's state
                return self.recommender.turn(content, state)
            with self.locks(session_id):
                reply = self.recommender.turn(content, self.store.load(session_id))
                self.store.save_turn(session_id, content, reply.to_json(), reply.state)
            return reply
        finally:
            ticket.release()

    def open_stream(self, session_id: str | None, users: list[str]):
        """A streamed turn begun: its first event, the rest, and what it holds (the
        session's lock and the turn's admission) until the stream ends. Bad input raises
        here, before any byte is sent: a 400."""
        if session_id:
            check_session_id(session_id)
            self.store.create(session_id)
            lock, state = self.locks(session_id), None
        else:
            lock, state = threading.Lock(), self.recommender.state_from(users[:-1])
        ticket = admit(self.admission)
        lock.acquire()
        try:
            if session_id:
                state = self.store.load(session_id)
            events = self.recommender.turn_stream(users[-1], state)
            return next(events), events, (lock, ticket)
        except BaseException:
            lock.release()
            ticket.release()
            raise


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"message", "type"}}``, never a trace."""
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


def create_app(recommender, store: SessionStore, api_key: str | None, model_name: str,
               live=None, admission: Admission | None = None,
               rate_limit: float = 0.0) -> FastAPI:
    """The API. ``api_key=None`` serves without authentication (127.0.0.1 only: the
    ``tailor serve`` command refuses other addresses without a key). ``live``: an
    ``agent.data.live.LiveCatalog`` for the catalog endpoints (none without it).
    ``admission``: how many turns run and wait at once (None: no limit). ``api_key``: one
    key or several, comma-separated; ``rate_limit``: turns a minute per key (0: none)."""
    app = FastAPI(title="Tailor", version="1", description="Conversational recommendations "
                  "from the catalog only. Authenticate with `Authorization: Bearer <key>`.")
    _add_error_handlers(app)
    authorize = make_authorize(api_key, rate_limit)  # bearer keys; each key's rate of turns
    turns = Turns(recommender, store, admission)
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

    not_found = {**ERRORS, 404: {"model": ErrorOut, "description": "no such session"}}

    @app.post("/v1/sessions/{session_id}/messages", dependencies=[Depends(authorize)],
              response_model=ReplyOut, responses=not_found)
    def message(session_id: str, body: MessageIn) -> dict:
        """One turn: ``{"text", "items": [...], "state", "notices"}``."""
        reply = turns.run(turns.known(session_id), body.content)
        out = reply.to_json()
        out.pop("timings_s", None)
        return out

    @app.post("/v1/sessions/{session_id}/feedback", dependencies=[Depends(authorize)],
              response_model=FeedbackOut, responses=not_found)
    def feedback(session_id: str, body: FeedbackIn) -> dict:
        """Like or dislike an item; stored before this answers, and the next turn uses it."""
        if body.item_id not in recommender.catalog:
            raise InputError(f"item {body.item_id} is not in the catalog")
        with turns.locks(turns.known(session_id)):
            state = store.add_feedback(session_id, body.item_id, body.value)
        return {"ok": True, "state": state.to_dict()}

    from agent.interfaces.chat_api import add_chat_route

    add_chat_route(app, turns, authorize, model_name)
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
