"""Reads for usage."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.usage.models import UsageRecord


def usage_recent_for(*, organization_id: int, limit: int = 50) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(organization_id=organization_id).order_by("-created_at")[
        :limit
    ]
