"""GET /v1/responses/{id}, its input items, DELETE: within the caller's organization only.

Another organization's response answers exactly as an unknown one, so that an id reveals
nothing about who else exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apps.protocol import errors
from apps.responses.models import StoredResponse
from apps.responses.selectors import stored_response_for
from apps.responses.services import stored_response_delete
from plugsky_site.db import db_call

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


async def retrieve(*, organization_id: int, response_id: str) -> dict[str, Any]:
    return (await _stored(organization_id=organization_id, response_id=response_id)).body


async def delete(*, organization_id: int, response_id: str) -> dict[str, Any]:
    if not await db_call(
        stored_response_delete, organization_id=organization_id, response_id=response_id
    ):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


async def input_items(
    *, organization_id: int, response_id: str, query: Mapping[str, str]
) -> dict[str, Any]:
    """One page of the response's input items, with OpenAI's list fields (newest first by
    default, `after`/`before` item ids as cursors)."""
    limit, order = _page_size(query.get("limit")), query.get("order", "desc")
    if order not in {"asc", "desc"}:
        raise errors.invalid_value(
            f"Invalid value for 'order': expected one of 'asc' or 'desc', but got {order!r}.",
            param="order",
            code="invalid_value",
        )
    stored = await _stored(organization_id=organization_id, response_id=response_id)
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    items = _after(items, query.get("after"), param="after")
    if query.get("before") is not None:
        items = _after(items[::-1], query.get("before"), param="before")[::-1]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


async def _stored(*, organization_id: int, response_id: str) -> StoredResponse:
    stored = await db_call(
        stored_response_for, organization_id=organization_id, response_id=response_id
    )
    if stored is None:
        raise _not_found(response_id)
    return stored


def _not_found(response_id: str) -> errors.APIError:
    return errors.APIError(f"Response with id '{response_id}' not found.", status=404)


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise errors.invalid_value(
            f"Invalid 'limit': expected an integer from 1 to {MAX_PAGE_SIZE}, but got {raw!r}.",
            param="limit",
            code="invalid_value",
        )
    return int(raw)


def _after(items: list[dict[str, Any]], cursor: str | None, *, param: str) -> list[dict[str, Any]]:
    """The items after the one whose id is `cursor` (all of them without one)."""
    if cursor is None:
        return items
    ids = [item["id"] for item in items]
    if cursor not in ids:
        raise errors.invalid_value(
            f"Invalid cursor: no input item with id '{cursor}' in this response.",
            param=param,
        )
    return items[ids.index(cursor) + 1 :]
