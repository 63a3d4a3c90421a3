"""Reads for usage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Trunc

from apps.usage.models import UsageDay, UsageMinute, UsageRecord, UsageRollupState
from apps.usage.rollups import STATE_PK, day_floor, minute_floor


def usage_cost_since(*, organization_id: int, api_key_id: int | None, since: datetime) -> int:
    """Micro-dollars charged to the organization (or to one of its keys) since `since`."""
    records = UsageRecord.objects.filter(organization_id=organization_id, created_at__gte=since)
    if api_key_id is not None:
        records = records.filter(api_key_id=api_key_id)
    return records.aggregate(total=Sum("cost_micros"))["total"] or 0


# --- Usage in time buckets: the rollups up to the watermark, the records after it --------------

# Before the first rollup run every minute is read from the records.
_NOTHING_ROLLED_UP = datetime(1970, 1, 1, tzinfo=UTC)
# The group_by names readers use -> the column, the same in UsageRecord and both rollups.
GROUP_COLUMNS = {
    "model": "model", "api_key_id": "api_key_id", "user_id": "end_user", "endpoint": "endpoint",
}  # fmt: skip
_SUMS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_micros")


@dataclass(frozen=True)
class UsageBucketRow:
    """One group's totals in one time bucket; a group column is None when not grouped by it.

    prompt_tokens are seconds or characters on the audio endpoints (apps/usage/endpoints.py).
    """

    bucket_start: datetime
    model: str | None
    api_key_id: int | None
    user_id: str | None
    endpoint: str | None
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_micros: int


def usage_watermark() -> datetime:
    """Where the rollups end: every minute before it is in UsageMinute, every day before its
    midnight in UsageDay."""
    state = UsageRollupState.objects.filter(pk=STATE_PK).values_list("rolled_up_to", flat=True)
    return state.first() or _NOTHING_ROLLED_UP


def _minute_ceil(moment: datetime) -> datetime:
    floor = minute_floor(moment)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _day_ceil(moment: datetime) -> datetime:
    floor = day_floor(moment)
    return floor if floor == moment else floor + timedelta(days=1)


@dataclass(frozen=True)
class _Source:
    """Where totals come from: a table, its time column, and how it counts requests."""

    queryset: QuerySet[Any]
    moment: str
    requests: Any


def _spans(
    start: datetime, end: datetime, watermark: datetime, *, use_days: bool
) -> dict[str, list[tuple[datetime, datetime]]]:
    """[start, end) split by source: whole closed days from the day rollups (for day buckets),
    whole rolled-up minutes from the minute rollups, the rest (partial minutes at either end, and
    the tail after the watermark) from the records."""
    minutes_from = min(_minute_ceil(start), end)
    minutes_to = max(minutes_from, min(watermark, minute_floor(end)))
    days_from = days_to = minutes_to
    if use_days:
        days_from = min(_day_ceil(minutes_from), minutes_to)
        days_to = max(days_from, day_floor(minutes_to))
    spans = {
        "records": [(start, minutes_from), (minutes_to, end)],
        "minutes": [(minutes_from, days_from), (days_to, minutes_to)],
        "days": [(days_from, days_to)],
    }
    return {name: [(lo, hi) for lo, hi in pairs if lo < hi] for name, pairs in spans.items()}


def _sources(
    organization_id: int, spans: dict[str, list[tuple[datetime, datetime]]]
) -> list[_Source]:
    tables = {
        "records": (UsageRecord, "created_at", Count("pk")),
        "minutes": (UsageMinute, "minute", Sum("requests")),
        "days": (UsageDay, "day_start", Sum("requests")),
    }
    sources = []
    for name, pairs in spans.items():
        if not pairs:
            continue
        model, moment, requests = tables[name]
        within = Q()
        for lo, hi in pairs:
            within |= Q(**{f"{moment}__gte": lo, f"{moment}__lt": hi})
        queryset = model._default_manager.filter(within, organization_id=organization_id)
        sources.append(_Source(queryset, moment, requests))
    return sources


def usage_buckets(
    *,
    organization_id: int,
    start: datetime,
    end: datetime,
    width: str,
    endpoints: Sequence[str] | None = None,
    group_by: Sequence[str] = (),
    models: Sequence[str] = (),
    api_key_ids: Sequence[int] = (),
) -> list[UsageBucketRow]:
    """Totals per `width` bucket ("minute", "hour", "day", UTC) in [start, end), exact to the token:
    before the watermark from the rollups (day rows for day buckets), the rest (the tail since the
    last run, any partial minute at either end) from the records. `endpoints` None: every one."""
    spans = _spans(start, end, usage_watermark(), use_days=width == "day")
    columns = [GROUP_COLUMNS[name] for name in group_by]
    rows: list[dict[str, Any]] = []
    for source in _sources(organization_id, spans):
        scoped = _scoped(
            source.queryset, endpoints=endpoints, models=models, api_key_ids=api_key_ids
        )
        rows += _grouped(scoped, source.moment, width, columns, requests=source.requests)
    return [_bucket_row(row) for row in _merged(rows, columns)]


def _scoped(
    queryset: QuerySet[Any],
    *,
    endpoints: Sequence[str] | None,
    models: Sequence[str],
    api_key_ids: Sequence[int],
) -> QuerySet[Any]:
    if endpoints is not None:
        queryset = queryset.filter(endpoint__in=list(endpoints))
    if models:
        queryset = queryset.filter(model__in=list(models))
    if api_key_ids:
        queryset = queryset.filter(api_key_id__in=list(api_key_ids))
    return queryset


def _grouped(
    queryset: QuerySet[Any], moment: str, width: str, columns: list[str], *, requests: Any
) -> QuerySet[Any]:
    return (
        queryset.annotate(bucket=Trunc(moment, width, tzinfo=UTC))
        .values("bucket", *columns)
        .annotate(
            requests=requests,
            prompt_tokens=Sum("prompt_tokens"),
            cached_tokens=Sum("cached_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost_micros=Sum("cost_micros"),
        )
        .order_by()
    )


def _merged(rows: Iterable[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """The rollups' and the records' totals of the same bucket and group, added up, in order."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["bucket"], *(row[column] for column in columns))
        total = merged.setdefault(key, {"bucket": row["bucket"], **{c: row[c] for c in columns}})
        for name in _SUMS:
            total[name] = total.get(name, 0) + (row[name] or 0)
    return [merged[key] for key in sorted(merged, key=_sortable)]


def _sortable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((value is None, value if value is not None else 0) for value in key)


def _bucket_row(row: dict[str, Any]) -> UsageBucketRow:
    return UsageBucketRow(
        bucket_start=row["bucket"],
        model=row.get("model"),
        api_key_id=row.get("api_key_id"),
        user_id=row.get("end_user"),
        endpoint=row.get("endpoint"),
        **{name: row[name] for name in _SUMS},
    )
