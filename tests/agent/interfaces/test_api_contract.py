"""The API against its own OpenAPI schema (schemathesis): generated requests, valid and
not, to every operation; every response must be documented, match its schema, and
never be a server error. (Driven through schemathesis' Python API: its pytest plugin
does not run under pytest 9.)

The runs are seeded (``derandomize=True``): the generation still explores, but the
same examples every run, so CI is deterministic; a failure it finds is kept below as
an explicit regression test."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from agent.interfaces.api import create_app
from agent.interfaces.sessions import SessionStore
from agent.llm.fake import FakeBackend
from tests.agent.turn.test_recommender import make

KEY = "contract-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture
def operations(catalog, tmp_path):
    store = SessionStore(tmp_path / "sessions.sqlite3")
    store.create("known-session")
    app = create_app(make(catalog, FakeBackend()), store, KEY, "fake-model")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in ops} == {
        "/health", "/v1/sessions", "/v1/sessions/{session_id}/messages",
        "/v1/sessions/{session_id}/feedback", "/v1/chat/completions", "/v1/stats"}
    return ops


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_to_its_schema(operations, mode):
    seen = set()
    for op in operations:
        if mode == GenerationMode.NEGATIVE and op.path in ("/health", "/v1/sessions",
                                                           "/v1/stats"):
            continue  # no inputs to get wrong
        @given(case=op.as_strategy(mode, path_parameters={"session_id": "known-session"}
                                   if "{session_id}" in op.path else None))
        @settings(FAST, max_examples=25)
        def check(case):
            # A schema-valid message can still be unusable (only spaces or control
            # characters): that is a 400 saying what to fix, which the schema cannot say.
            response = case.call_and_validate(headers=AUTH,
                                              excluded_checks=[positive_data_acceptance])
            seen.add((op.path, response.status_code))

        check()
    if mode == GenerationMode.POSITIVE:  # the handlers were reached, not only validation
        assert {("/v1/sessions/{session_id}/messages", 200), ("/v1/chat/completions", 200),
                ("/v1/sessions/{session_id}/feedback", 200)} & seen
    else:
        assert any(status == 422 for _, status in seen)


@pytest.mark.parametrize("item_id", [True, False, 1.0, "1"])
def test_regression_feedback_with_a_non_integer_item_id_is_a_422(operations, item_id):
    """Found by the negative run: ``{"item_id": true}`` was coerced to item 1 and
    answered 200 (a like stored) where the schema says integer."""
    op = next(op for op in operations if op.path == "/v1/sessions/{session_id}/feedback")
    case = op.Case(path_parameters={"session_id": "known-session"},
                   body={"item_id": item_id, "value": "like"},
                   media_type="application/json")
    response = case.call_and_validate(headers=AUTH)
    assert response.status_code == 422, response.text


def test_without_the_key_every_operation_but_health_is_401(operations):
    for op in operations:
        @given(case=op.as_strategy())
        @settings(FAST, max_examples=5)
        def check(case):
            status = case.call().status_code
            assert status == 200 if op.path == "/health" else status == 401

        check()
