"""Reads for usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import Trunc

from apps.usage.models import UsageRecord


def usage_cost_since(*, organization_id: int, api_key_id: int | None, since: datetime) -> int:
    """Micro-dollars charged to the organization (or to one of its keys) since `since`."""
    records = UsageRecord.objects.filter(organization_id=organization_id, created_at__gte=since)
    if api_key_id is not None:
        records = records.filter(api_key_id=api_key_id)
    return records.aggregate(total=Sum("cost_micros"))["total"] or 0


# --- Usage in time buckets (the organization admin API) ------------------------------------------

EMBEDDINGS_ENDPOINT = "embeddings"
_GROUP_COLUMNS = {"model": "model", "api_key_id": "api_key_id", "user_id": "end_user"}


@dataclass(frozen=True)
class UsageBucketRow:
    """One group's totals in one time bucket; a group column is None when not grouped by it."""

    bucket_start: datetime
    model: str | None
    api_key_id: int | None
    user_id: str | None
    requests: int
    input_tokens: int
    input_cached_tokens: int
    output_tokens: int


def usage_buckets(
    *,
    organization_id: int,
    start: datetime,
    end: datetime,
    width: str,
    is_embeddings: bool,
    group_by: Sequence[str] = (),
    models: Sequence[str] = (),
    api_key_ids: Sequence[int] = (),
) -> list[UsageBucketRow]:
    """Totals per `width` bucket ("minute", "hour", "day", UTC) in [start, end), summed from the
    UsageRecords themselves, so they are exact to the token; `group_by` from _GROUP_COLUMNS."""
    records = UsageRecord.objects.filter(
        organization_id=organization_id, created_at__gte=start, created_at__lt=end
    )
    endpoint = Q(endpoint=EMBEDDINGS_ENDPOINT)
    records = records.filter(endpoint if is_embeddings else ~endpoint)
    if models:
        records = records.filter(model__in=list(models))
    if api_key_ids:
        records = records.filter(api_key_id__in=list(api_key_ids))
    columns = [_GROUP_COLUMNS[name] for name in group_by]
    rows = (
        records.annotate(bucket=Trunc("created_at", width, tzinfo=UTC))
        .values("bucket", *columns)
        .annotate(
            requests=Count("pk"),
            input_tokens=Sum("prompt_tokens"),
            input_cached_tokens=Sum("cached_tokens"),
            output_tokens=Sum("completion_tokens"),
        )
        .order_by("bucket", *columns)
    )
    return [_bucket_row(row) for row in rows]


def _bucket_row(row: dict[str, Any]) -> UsageBucketRow:
    return UsageBucketRow(
        bucket_start=row["bucket"],
        model=row.get("model"),
        api_key_id=row.get("api_key_id"),
        user_id=row.get("end_user"),
        requests=row["requests"],
        input_tokens=row["input_tokens"] or 0,
        input_cached_tokens=row["input_cached_tokens"] or 0,
        output_tokens=row["output_tokens"] or 0,
    )
