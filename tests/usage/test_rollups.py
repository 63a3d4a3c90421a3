"""The per-minute usage rollups and their watermark, against sums taken here from the records."""

from datetime import UTC, datetime, timedelta

from apps.usage.models import UsageDay, UsageMinute, UsageRecord, UsageRollupState
from apps.usage.rollups import REVISIT, SETTLE_MARGIN, usage_rollup_advance
from apps.usage.selectors import usage_watermark
from apps.usage.tasks import usage_rollup_for_day, usage_rollup_recent
from tests.usage.conftest import MIDNIGHT, NOON, record


def sums_from_records(
    before: datetime, *, per_day: bool = False
) -> dict[tuple[object, ...], tuple[int, ...]]:
    """What the rollups must hold: every minute (or day) before `before`, summed in Python from
    the records."""
    sums: dict[tuple[object, ...], list[int]] = {}
    for r in UsageRecord.objects.filter(created_at__lt=before):
        minute = r.created_at.replace(second=0, microsecond=0)
        if per_day:
            minute = minute.replace(hour=0, minute=0)
        group = (r.organization_id, r.api_key_id, r.endpoint, r.model, r.end_user, minute)
        row = sums.setdefault(group, [0, 0, 0, 0, 0])
        values = (1, r.prompt_tokens, r.cached_tokens, r.completion_tokens, r.cost_micros)
        for position, value in enumerate(values):
            row[position] += value
    return {group: tuple(row) for group, row in sums.items()}


def sums_from_rollups() -> dict[tuple[object, ...], tuple[int, ...]]:
    return {
        (row.organization_id, row.api_key_id, row.endpoint, row.model, row.end_user, row.minute): (
            row.requests, row.prompt_tokens, row.cached_tokens, row.completion_tokens,
            row.cost_micros,
        )
        for row in UsageMinute.objects.all()
    }  # fmt: skip


def sums_from_days() -> dict[tuple[object, ...], tuple[int, ...]]:
    return {
        (row.organization_id, row.api_key_id, row.endpoint, row.model, row.end_user,
         row.day_start): (
            row.requests, row.prompt_tokens, row.cached_tokens, row.completion_tokens,
            row.cost_micros,
        )
        for row in UsageDay.objects.all()
    }  # fmt: skip


def test_every_closed_minute_is_rolled_up_exactly_and_nothing_after_it(traffic):
    organization, key, _, _ = traffic
    usage_rollup_advance(now=NOON + SETTLE_MARGIN)

    assert usage_watermark() == NOON
    rollups = sums_from_rollups()
    assert rollups == sums_from_records(before=NOON)
    group = (organization.pk, key.pk, "chat.completions", "plugsky-nano", "", MIDNIGHT)
    assert rollups[group] == (2, 15, 4, 25, 3)
    assert all(minute < NOON for *_, minute in rollups)
    assert UsageDay.objects.count() == 0  # the day is not over at the watermark


def test_a_day_is_summed_from_its_minutes_once_the_watermark_passed_it(traffic):
    organization, key, _, _ = traffic
    usage_rollup_advance(now=NOON + timedelta(days=1) + SETTLE_MARGIN)
    days = sums_from_days()
    assert days == sums_from_records(before=MIDNIGHT + timedelta(days=1), per_day=True)
    group = (organization.pk, key.pk, "chat.completions", "plugsky-nano", "", MIDNIGHT)
    assert days[group] == (4, 25, 4, 36, 15)
    assert {day for *_, day in days} == {MIDNIGHT}  # the second day is still open


def test_the_watermark_stays_behind_the_settlements_still_in_flight(traffic):
    usage_rollup_advance(now=NOON + timedelta(seconds=30))  # 11:58:30 is not a closed minute
    assert usage_watermark() == NOON - SETTLE_MARGIN
    # An earlier clock never moves it back.
    usage_rollup_advance(now=MIDNIGHT)
    assert usage_watermark() == NOON - SETTLE_MARGIN


def test_a_run_again_changes_nothing(traffic):
    usage_rollup_advance(now=NOON)
    first = sums_from_rollups()
    usage_rollup_advance(now=NOON)
    assert sums_from_rollups() == first
    assert UsageRollupState.objects.count() == 1


def test_a_catch_up_over_days_lands_on_the_same_rows_as_small_steps(traffic):
    later = MIDNIGHT + timedelta(days=2)
    usage_rollup_advance(now=later)
    at_once = sums_from_rollups(), sums_from_days()
    UsageMinute.objects.all().delete()
    UsageDay.objects.all().delete()
    UsageRollupState.objects.all().delete()
    for hours in range(0, 49, 5):
        usage_rollup_advance(now=MIDNIGHT + timedelta(hours=hours))
    usage_rollup_advance(now=later)
    assert (sums_from_rollups(), sums_from_days()) == at_once
    assert at_once == (
        sums_from_records(before=later - SETTLE_MARGIN),
        sums_from_records(before=MIDNIGHT + timedelta(days=1), per_day=True),
    )


def test_a_late_settlement_just_before_midnight_reaches_its_day(traffic):
    organization, key, _, _ = traffic
    next_midnight = MIDNIGHT + timedelta(days=1)
    usage_rollup_advance(now=next_midnight + timedelta(minutes=5) + SETTLE_MARGIN)
    record(100, organization, key, "plugsky-nano", next_midnight - timedelta(minutes=1), 1, 1, 1)
    usage_rollup_advance(now=next_midnight + timedelta(minutes=6) + SETTLE_MARGIN)
    assert sums_from_days() == sums_from_records(before=next_midnight, per_day=True)


def test_a_settlement_committed_late_is_counted_by_the_next_run(traffic):
    organization, key, _, _ = traffic
    usage_rollup_advance(now=NOON)
    # Stamped before the watermark, committed after the run (a slow settlement).
    late = NOON - SETTLE_MARGIN - REVISIT + timedelta(seconds=1)
    record(100, organization, key, "plugsky-nano", late, 1, 1, 1)
    assert sums_from_rollups() != sums_from_records(before=usage_watermark())
    usage_rollup_advance(now=NOON + timedelta(minutes=1))
    assert sums_from_rollups() == sums_from_records(before=usage_watermark())


def test_a_day_recomputed_follows_its_records_up_to_the_watermark_only(traffic):
    organization, key, other_key, _ = traffic
    usage_rollup_advance(now=NOON + SETTLE_MARGIN)
    record(100, organization, key, "plugsky-nano", MIDNIGHT + timedelta(hours=6), 1, 1, 5)
    # A key deleted since: its records now belong to no key, and its rollup row must go.
    deleted_key_id = other_key.pk
    other_key.delete()

    usage_rollup_for_day(MIDNIGHT.date().isoformat())

    rollups = sums_from_rollups()
    assert rollups == sums_from_records(before=NOON)
    assert not any(group[1] == deleted_key_id for group in rollups)
    assert usage_watermark() == NOON


def test_a_closed_day_recomputed_follows_its_records(traffic):
    organization, key, _, _ = traffic
    usage_rollup_advance(now=NOON + timedelta(days=1))
    record(100, organization, key, "plugsky-nano", MIDNIGHT + timedelta(hours=6), 1, 1, 5)
    assert sums_from_days() != sums_from_records(before=MIDNIGHT + timedelta(days=1), per_day=True)
    usage_rollup_for_day(MIDNIGHT.date().isoformat())
    assert sums_from_days() == sums_from_records(before=MIDNIGHT + timedelta(days=1), per_day=True)


def test_the_periodic_task_rolls_up_to_just_before_now(organization):
    now = datetime.now(UTC)
    record(200, organization, None, "plugsky-nano", now - timedelta(minutes=5), 3, 4, 5)
    record(201, organization, None, "plugsky-nano", now - timedelta(days=1), 1, 1, 1)
    assert usage_rollup_recent() == 2
    assert now - SETTLE_MARGIN - timedelta(minutes=1) <= usage_watermark() <= now - SETTLE_MARGIN
    assert sorted(UsageMinute.objects.values_list("cost_micros", flat=True)) == [1, 5]


def test_no_records_no_rollups_and_a_watermark_at_the_cutoff(db):
    assert usage_rollup_advance(now=NOON) == 0
    assert usage_watermark() == NOON - SETTLE_MARGIN
    assert UsageMinute.objects.count() == 0
