"""Metering of one /v1 call: opened before the model runs, closed exactly once after.

`meter_open` is where credit is reserved before a model is called; `meter_close` records the
UsageRecord with the exact token counts (and, with billing, settles the charge).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async

from apps.catalog.entries import CatalogEntry
from apps.usage.services import CallOutcome, usage_record_create


@dataclass
class Meter:
    request_id: str
    organization_id: int
    api_key_id: int | None
    endpoint: str
    entry: CatalogEntry
    is_stream: bool
    end_user: str
    is_tester: bool = False
    started: float = field(default_factory=time.monotonic)
    is_closed: bool = False


async def meter_open(
    *,
    request_id: str,
    organization_id: int,
    api_key_id: int | None,
    endpoint: str,
    entry: CatalogEntry,
    max_prompt_tokens: int,
    max_completion_tokens: int,
    is_stream: bool,
    end_user: str = "",
    is_tester: bool = False,
) -> Meter:
    """Start metering a call whose worst case is max_prompt_tokens + max_completion_tokens."""
    return Meter(
        request_id=request_id,
        organization_id=organization_id,
        api_key_id=api_key_id,
        endpoint=endpoint,
        entry=entry,
        is_stream=is_stream,
        end_user=end_user,
        is_tester=is_tester,
    )


async def meter_close(
    meter: Meter,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    status: int,
    error_code: str = "",
    client_disconnected: bool = False,
) -> int:
    """Record the call once; returns its cost in micro-dollars."""
    if meter.is_closed:
        raise RuntimeError(f"meter {meter.request_id} closed twice")
    meter.is_closed = True
    outcome = CallOutcome(
        request_id=meter.request_id,
        organization_id=meter.organization_id,
        api_key_id=meter.api_key_id,
        endpoint=meter.endpoint,
        model=meter.entry.id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=int((time.monotonic() - meter.started) * 1000),
        status=status,
        error_code=error_code,
        is_stream=meter.is_stream,
        is_client_disconnect=client_disconnected,
        is_tester=meter.is_tester,
        end_user=meter.end_user,
    )
    await sync_to_async(usage_record_create)(outcome=outcome)
    return 0
