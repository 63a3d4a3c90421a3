"""Writes of the usage rollups: per-minute sums of the UsageRecords, per-day sums of those
minutes, and their watermark.

Nothing here runs on the request path: the beat task recomputes the minutes that have closed,
idempotently, and moves the watermark (UsageRollupState) past them; a day is summed from its
minutes once the watermark has passed its end, and again whenever one of its minutes is. Readers
(selectors) take the rollups before the watermark and the records after it, so a call counts the
moment it settles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from apps.usage.models import UsageDay, UsageMinute, UsageRecord, UsageRollupState

STATE_PK = 1
# A record's created_at is stamped before its settlement commits; a minute is rolled up only once
# this long has passed since its end, so no settlement still in flight can land in it.
SETTLE_MARGIN = timedelta(minutes=2)
# Each run recomputes the last minutes before the watermark again: a settlement that took longer
# than the margin to commit is counted by the next run rather than never.
REVISIT = timedelta(minutes=15)
# A catch-up (the first run, or after beat was down) goes in steps, one short transaction each.
_STEP = timedelta(hours=6)
_GROUP_COLUMNS = ("organization_id", "api_key_id", "endpoint", "model", "end_user")


_SUMS = ("prompt_tokens", "cached_tokens", "completion_tokens", "cost_micros")


def minute_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def day_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _minutes_recompute(start: datetime, end: datetime) -> int:
    """Replace the rollups of [start, end) with sums of its records; call under the state lock."""
    groups = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(minute=Trunc("created_at", "minute", tzinfo=UTC))
        .values("minute", *_GROUP_COLUMNS)
        .annotate(requests=Count("pk"), **{name: Sum(name) for name in _SUMS})
        .order_by()
    )
    rows = [UsageMinute(**group) for group in groups]
    UsageMinute.objects.filter(minute__gte=start, minute__lt=end).delete()
    UsageMinute.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def _days_recompute(start: datetime, end: datetime) -> None:
    """Replace the day rollups of the midnights in [start, end) with sums of their minutes."""
    if end <= start:
        return
    groups = (
        UsageMinute.objects.filter(minute__gte=start, minute__lt=end)
        .annotate(day_start=Trunc("minute", "day", tzinfo=UTC))
        .values("day_start", *_GROUP_COLUMNS)
        .annotate(requests=Sum("requests"), **{name: Sum(name) for name in _SUMS})
        .order_by()
    )
    rows = [UsageDay(**group) for group in groups]
    UsageDay.objects.filter(day_start__gte=start, day_start__lt=end).delete()
    UsageDay.objects.bulk_create(rows, batch_size=2000)


def _recompute(start: datetime, end: datetime, watermark: datetime) -> int:
    """Minutes of [start, end), then the closed days they fall in (before the watermark's day)."""
    written = _minutes_recompute(start, end)
    _days_recompute(day_floor(start), min(day_floor(end - timedelta(microseconds=1))
                                          + timedelta(days=1), day_floor(watermark)))  # fmt: skip
    return written


def _state_ensure(cutoff: datetime) -> None:
    """The watermark row, created at the first record's minute (nothing to roll before it)."""
    first = UsageRecord.objects.order_by("created_at").values_list("created_at", flat=True).first()
    start = minute_floor(first) if first is not None else cutoff
    UsageRollupState.objects.get_or_create(pk=STATE_PK, defaults={"rolled_up_to": start})


def _locked_state() -> UsageRollupState:
    return UsageRollupState.objects.select_for_update().get(pk=STATE_PK)


def usage_rollup_advance(*, now: datetime | None = None) -> int:
    """Roll up every minute closed since the last run (revisiting the last few) and move the
    watermark to the end of the last one; running it again changes nothing. Returns the rows."""
    cutoff = minute_floor((now or timezone.now()) - SETTLE_MARGIN)
    _state_ensure(cutoff)
    written, revisit = 0, REVISIT
    while True:
        with transaction.atomic():
            state = _locked_state()
            start = state.rolled_up_to - revisit
            end = min(start + _STEP, cutoff)
            if end <= start:
                return written
            if end > state.rolled_up_to:
                state.rolled_up_to = end
                state.save(update_fields=["rolled_up_to", "updated_at"])
            written += _recompute(start, end, state.rolled_up_to)
        if end >= cutoff:
            return written
        revisit = timedelta(0)


def usage_rollup_recompute(*, start: datetime, end: datetime) -> int:
    """Recompute the rolled-up minutes of [start, end) and their closed days, e.g. after records
    were backfilled.

    Minutes at or past the watermark are left alone: readers sum their records directly.
    """
    with transaction.atomic():
        state = UsageRollupState.objects.select_for_update().filter(pk=STATE_PK).first()
        if state is None:
            return 0
        end = min(minute_floor(end), state.rolled_up_to)
        if end <= start:
            return 0
        return _recompute(minute_floor(start), end, state.rolled_up_to)
