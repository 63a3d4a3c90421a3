"""Celery tasks for usage: thin wrappers around services, safe to run twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from celery import shared_task

from apps.usage.rollups import usage_rollup_advance, usage_rollup_recompute


@shared_task
def usage_rollup_recent() -> int:
    """Roll up the minutes closed since the last run and move the watermark past them."""
    return usage_rollup_advance()


@shared_task
def usage_rollup_for_day(day_iso: str) -> int:
    """Recompute one UTC day's rolled-up minutes, e.g. after a backfill."""
    start = datetime.combine(date.fromisoformat(day_iso), time.min, tzinfo=UTC)
    return usage_rollup_recompute(start=start, end=start + timedelta(days=1))
