"""Writes for usage: the record of one API call."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from apps.usage.models import UsageRecord


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


def usage_record_create(*, outcome: CallOutcome, cost_micros: int = 0) -> UsageRecord:
    """Record one call. The unique request id makes a second attempt fail, never double-count."""
    return UsageRecord.objects.create(**asdict(outcome), cost_micros=cost_micros)
