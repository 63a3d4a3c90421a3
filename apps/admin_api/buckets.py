"""Time buckets of the usage and costs endpoints: windows snapped to UTC, and the page cursor.

As OpenAI's: `start_time` inclusive and `end_time` exclusive (Unix seconds, default now), every
bucket of the range listed even when empty, `limit` buckets a page, `next_page` an opaque cursor.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from apps.protocol.errors import invalid_value


@dataclass(frozen=True)
class Width:
    seconds: int
    trunc: str  # the unit of django.db.models.functions.Trunc
    default_limit: int
    max_limit: int


USAGE_WIDTHS = {
    "1m": Width(60, "minute", 60, 1440),
    "1h": Width(3600, "hour", 24, 168),
    "1d": Width(86400, "day", 7, 31),
}
COSTS_WIDTHS = {"1d": Width(86400, "day", 7, 180)}


@dataclass(frozen=True)
class Window:
    """The buckets of one page: their starts, where the query stops, and the next page."""

    width: Width
    starts: list[int]
    end: int
    next_start: int | None

    @property
    def start_moment(self) -> datetime:
        return datetime.fromtimestamp(self.starts[0], tz=UTC)

    @property
    def end_moment(self) -> datetime:
        return datetime.fromtimestamp(self.end, tz=UTC)


def _encode(start: int) -> str:
    return base64.urlsafe_b64encode(f"bucket:{start}".encode()).decode()


def _decode(page: str) -> int:
    try:
        text = base64.urlsafe_b64decode(page.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    label, _, digits = text.partition(":")
    if label != "bucket" or not digits.isdigit():
        raise invalid_value(
            "Invalid `page`: use the `next_page` of the previous page.",
            param="page",
            code="invalid_value",
        )
    return int(digits)


def window_for(*, query: dict[str, Any], width: Width) -> Window:
    """The page of buckets a validated query asks for; APIError for an impossible range."""
    first = query["start_time"] - query["start_time"] % width.seconds
    # The default end is now rounded up: a call settled this very second is in the last bucket.
    end = query.get("end_time") or math.ceil(timezone.now().timestamp())
    if end <= query["start_time"]:
        raise invalid_value(
            "`end_time` must be after `start_time`.", param="end_time", code="invalid_value"
        )
    limit = query.get("limit") or width.default_limit
    if limit > width.max_limit:
        message = f"`limit` is at most {width.max_limit} for this bucket width."
        raise invalid_value(message, param="limit", code="invalid_value")
    if query.get("page"):
        first = _decode(query["page"])
        if first % width.seconds or not query["start_time"] - width.seconds < first < end:
            raise invalid_value(
                "`page` does not belong to this query.", param="page", code="invalid_value"
            )
    starts = list(range(first, end, width.seconds)[: limit + 1])
    has_more = len(starts) > limit
    starts = starts[:limit]
    page_end = min(starts[-1] + width.seconds, end)
    return Window(width, starts, page_end, starts[-1] + width.seconds if has_more else None)


def page(
    *, window: Window, rows: Iterable[Any], start_of: Callable[[Any], datetime],
    result: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """OpenAI's `page` of buckets, each with the results of the rows that fall in it."""
    results: dict[int, list[dict[str, Any]]] = {start: [] for start in window.starts}
    for row in rows:
        results[int(start_of(row).timestamp())].append(result(row))
    data = [
        {
            "object": "bucket",
            "start_time": start,
            "end_time": min(start + window.width.seconds, window.end),
            "results": results[start],
        }
        for start in window.starts
    ]
    next_page = _encode(window.next_start) if window.next_start is not None else None
    return {
        "object": "page",
        "data": data,
        "has_more": next_page is not None,
        "next_page": next_page,
    }
