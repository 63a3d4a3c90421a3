"""Reads for usage."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Sum

from apps.usage.models import UsageRecord


def usage_cost_since(*, organization_id: int, api_key_id: int | None, since: datetime) -> int:
    """Micro-dollars charged to the organization (or to one of its keys) since `since`."""
    records = UsageRecord.objects.filter(organization_id=organization_id, created_at__gte=since)
    if api_key_id is not None:
        records = records.filter(api_key_id=api_key_id)
    return records.aggregate(total=Sum("cost_micros"))["total"] or 0
