"""Writes for usage: the record of one API call (its rollups: apps/usage/rollups.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

from django.db.models import Field

from apps.usage.models import UsageRecord

logger = logging.getLogger(__name__)

# The positive integer columns: PostgreSQL's integer, and smallint for the status.
_COUNT_MAXIMA = {
    "prompt_tokens": 2**31 - 1,
    "completion_tokens": 2**31 - 1,
    "cached_tokens": 2**31 - 1,
    "reasoning_tokens": 2**31 - 1,
    "route_index": 2**15 - 1,
    "latency_ms": 2**31 - 1,
    "status": 2**15 - 1,
}


@dataclass(frozen=True)
class CallOutcome:
    """Everything known about a finished API call, as recorded and billed."""

    request_id: str
    organization_id: int
    api_key_id: int | None
    endpoint: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    status: int
    error_code: str = ""
    is_stream: bool = False
    is_client_disconnect: bool = False
    is_tester: bool = False
    end_user: str = ""
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    provider: str = ""
    route_index: int = 0
    upstream_model: str = ""
    upstream_request_id: str = ""


def usage_record_create(*, outcome: CallOutcome, cost_micros: int = 0) -> UsageRecord:
    """Record one call. The unique request id makes a second attempt fail, never double-count."""
    return UsageRecord.objects.create(**usage_record_fields(outcome), cost_micros=cost_micros)


def usage_record_fields(outcome: CallOutcome) -> dict[str, Any]:
    """The outcome's fields as its columns can take them, so settlement cannot fail on them.

    The serving modules refuse a `user` PostgreSQL cannot store (over 256 characters, or with a
    NUL) with a 400 before the model runs; this is the last line, for every text field: NULs
    dropped, cut to the column's length, numbers kept within their columns.
    """
    # Shallow: every field is a number or a string (asdict's deep copy cost more than the rest).
    fields = {field.name: getattr(outcome, field.name) for field in dataclass_fields(outcome)}
    for name, value in fields.items():
        if isinstance(value, str):
            max_length = _field_max_length(name)
            fitted = value.replace("\x00", "")[:max_length]
            if fitted != value:
                logger.warning("call %s: %s cut to fit its column", outcome.request_id, name)
            fields[name] = fitted
    for name, largest in _COUNT_MAXIMA.items():
        fields[name] = min(max(fields[name], 0), largest)
    return fields


def _field_max_length(name: str) -> int | None:
    field = UsageRecord._meta.get_field(name)
    return field.max_length if isinstance(field, Field) else None
