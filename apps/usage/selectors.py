"""Reads for usage."""

from __future__ import annotations

from datetime import date, datetime

from django.db.models import QuerySet, Sum

from apps.usage.models import UsageDaily, UsageRecord


def usage_recent_for(*, organization_id: int, limit: int = 50) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(organization_id=organization_id).order_by("-created_at")[
        :limit
    ]


def usage_cost_since(*, organization_id: int, api_key_id: int | None, since: datetime) -> int:
    """Micro-dollars charged to the organization (or to one of its keys) since `since`."""
    records = UsageRecord.objects.filter(organization_id=organization_id, created_at__gte=since)
    if api_key_id is not None:
        records = records.filter(api_key_id=api_key_id)
    return records.aggregate(total=Sum("cost_micros"))["total"] or 0


def usage_daily_for(*, organization_id: int, since: date) -> QuerySet[UsageDaily]:
    """The organization's daily rollups from `since` on, oldest first."""
    return UsageDaily.objects.filter(organization_id=organization_id, day__gte=since).order_by(
        "day", "model", "api_key_id"
    )
