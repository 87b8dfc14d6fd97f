"""The API's catalog endpoints: add or replace an item, take one off sale, record an
interaction (``agent.data.live`` keeps them durably and updates the index at once)."""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

from agent.interfaces.api import ERRORS, StrictIn

EXTERNAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"


class ItemIn(StrictIn):
    fields: dict = Field(description="the item's fields by the catalog schema's names (as in "
                         "the imported file): the title, text fields and facets, e.g. "
                         '{"name": "Uniqlo navy wool jumper", "category": "jumper", '
                         '"price": 39.9}')


class ItemWritten(BaseModel):
    id: int = Field(description="the internal id replies use")
    external_id: str
    title: str
    created: bool


class InteractionIn(StrictIn):
    user: str = Field(min_length=1, max_length=100, description="your user id")
    item: str = Field(min_length=1, max_length=100, description="the item's external id")
    timestamp: int | None = Field(None, description="seconds since 1970; default now")
    rating: float | None = None


class Ok(BaseModel):
    ok: bool


def add_catalog_routes(app: FastAPI, live, authorize) -> None:
    """``live``: an ``agent.data.live.LiveCatalog``; ``authorize``: the API's key check."""
    not_found = {**ERRORS, 404: ERRORS[400] | {"description": "no such item"}}

    @app.put("/v1/items/{external_id}", dependencies=[Depends(authorize)],
             response_model=ItemWritten, responses=ERRORS)
    def put_item(external_id: str, body: ItemIn) -> dict:
        """Add an item or replace one (by its external id). Checked against the catalog
        schema like an imported row; searchable as soon as this answers."""
        _check(external_id)
        item, created = live.upsert(external_id, body.fields)
        return {"id": item.id, "external_id": external_id, "title": item.title,
                "created": created}

    @app.delete("/v1/items/{external_id}", dependencies=[Depends(authorize)],
                response_model=Ok, responses=not_found)
    def hide_item(external_id: str) -> dict:
        """Take an item off sale: it is never recommended again (kept in the data, so
        past sessions and interactions still name it)."""
        _check(external_id)
        try:
            live.hide(external_id)
        except KeyError:
            raise HTTPException(404, f"no item {external_id!r} in the catalog") from None
        return {"ok": True}

    @app.post("/v1/interactions", dependencies=[Depends(authorize)], response_model=Ok,
              responses=not_found)
    def add_interaction(body: InteractionIn) -> dict:
        """Record that a user interacted with an item (stored before this answers; the
        collaborative stages learn it when retrained)."""
        try:
            live.add_interaction(body.user, body.item, body.timestamp, body.rating)
        except KeyError:
            raise HTTPException(404, f"no item {body.item!r} in the catalog") from None
        return {"ok": True}


def _check(external_id: str) -> None:
    import re

    from agent.errors import InputError

    if not re.match(EXTERNAL_ID, external_id):
        raise InputError("an item id is 1-100 letters, digits, '.', '_', ':' or '-'")
