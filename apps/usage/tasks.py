"""Celery tasks for usage: thin wrappers around services, safe to run twice."""

from __future__ import annotations

from datetime import date, timedelta

from celery import shared_task
from django.utils import timezone

from apps.usage.services import usage_rollup_day


@shared_task
def usage_rollup_recent() -> int:
    """Recompute today's and yesterday's rollups (yesterday: calls settled after midnight)."""
    today = timezone.now().date()  # UTC: USE_TZ with TIME_ZONE = UTC
    return sum(usage_rollup_day(day=day) for day in (today - timedelta(days=1), today))


@shared_task
def usage_rollup_for_day(day_iso: str) -> int:
    """Recompute one UTC day's rollups, e.g. after a backfill."""
    return usage_rollup_day(day=date.fromisoformat(day_iso))
