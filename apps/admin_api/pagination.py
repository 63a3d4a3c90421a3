"""OpenAI's cursor pagination for lists: `after` (an id), `limit`; `first_id`, `last_id`,
`has_more`. Ordered by the id's primary key, oldest first, so a walk sees each object once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Model, QuerySet

from apps.admin_api import ids
from apps.protocol.errors import invalid_value


def list_page(
    queryset: QuerySet[Any],
    *,
    prefix: str,
    field: str,
    after: str | None,
    limit: int,
    present: Callable[[list[Any]], list[dict[str, Any]]],
) -> dict[str, Any]:
    """One page of `queryset` ordered by `field` (the pk behind the public ids of `prefix`);
    `present` turns the page's rows into objects at once, so it can batch its own reads."""
    if after is not None:
        after_pk = ids.pk_of(prefix, after)
        if after_pk is None:
            raise invalid_value(
                f"Invalid `after`: {after!r} is not an id of this list.",
                param="after",
                code="invalid_value",
            )
        queryset = queryset.filter(**{f"{field}__gt": after_pk})
    rows: list[Model] = list(queryset.order_by(field)[: limit + 1])
    data = present(rows[:limit])
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }
