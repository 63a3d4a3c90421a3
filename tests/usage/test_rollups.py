from datetime import UTC, date, datetime, timedelta

import pytest

from apps.accounts.selectors import personal_organization_for
from apps.keys.services import api_key_create
from apps.usage.models import UsageDaily, UsageRecord
from apps.usage.services import CallOutcome, usage_record_create, usage_rollup_day
from apps.usage.tasks import usage_rollup_for_day, usage_rollup_recent
from tests.factories import make_user

DAY = date(2026, 3, 14)
MIDNIGHT = datetime(2026, 3, 14, tzinfo=UTC)


def record(number, organization, key, model, at, prompt, completion, cost, status=200):  # type: ignore[no-untyped-def]
    created = usage_record_create(
        outcome=CallOutcome(
            request_id=f"req_rollup_{number}",
            organization_id=organization.pk,
            api_key_id=key.pk if key else None,
            endpoint="chat.completions",
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=1,
            status=status,
        ),
        cost_micros=cost,
    )
    UsageRecord.objects.filter(pk=created.pk).update(created_at=at)


@pytest.fixture
def traffic(organization, owner):  # type: ignore[no-untyped-def]
    key, _ = api_key_create(organization=organization, created_by=owner, name="a")
    other_key, _ = api_key_create(organization=organization, created_by=owner, name="b")
    other_org = personal_organization_for(user=make_user("other@example.com"))
    calls = [
        (organization, key, "plugsky-nano", MIDNIGHT, 10, 20, 2),
        (organization, key, "plugsky-nano", MIDNIGHT + timedelta(hours=23, minutes=59), 5, 5, 1),
        (organization, key, "plugsky-mini", MIDNIGHT + timedelta(hours=1), 100, 0, 0),
        (organization, other_key, "plugsky-nano", MIDNIGHT + timedelta(hours=2), 7, 3, 1),
        (organization, None, "plugsky-nano", MIDNIGHT + timedelta(hours=3), 1, 1, 1),
        (organization, None, "plugsky-nano", MIDNIGHT + timedelta(hours=4), 2, 2, 1),
        (other_org, None, "plugsky-embed", MIDNIGHT + timedelta(hours=5), 1_000, 0, 10),
        # Outside the day on either side:
        (organization, key, "plugsky-nano", MIDNIGHT - timedelta(microseconds=1), 99, 99, 99),
        (organization, key, "plugsky-nano", MIDNIGHT + timedelta(days=1), 99, 99, 99),
    ]
    for number, call in enumerate(calls):
        record(number, *call)
    return organization, key, other_key, other_org


Sums = dict[tuple[int, int | None, str], tuple[int, int, int, int]]


def sums_from_records(day: date) -> Sums:
    """What the day's rollups must say, summed here in Python from the records themselves."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    records = UsageRecord.objects.filter(
        created_at__gte=start, created_at__lt=start + timedelta(days=1)
    )
    sums: dict[tuple[int, int | None, str], list[int]] = {}
    for r in records:
        row = sums.setdefault((r.organization_id, r.api_key_id, r.model), [0, 0, 0, 0])
        for position, value in enumerate((1, r.prompt_tokens, r.completion_tokens, r.cost_micros)):
            row[position] += value
    return {group: (row[0], row[1], row[2], row[3]) for group, row in sums.items()}


def sums_from_rollups(day: date) -> Sums:
    rows = UsageDaily.objects.filter(day=day)
    return {
        (row.organization_id, row.api_key_id, row.model): (
            row.requests,
            row.prompt_tokens,
            row.completion_tokens,
            row.cost_micros,
        )
        for row in rows
    }


def test_rollups_equal_the_sum_of_usage_records(traffic):
    organization, key, _, _ = traffic
    assert usage_rollup_day(day=DAY) == 5

    assert sums_from_rollups(DAY) == sums_from_records(DAY)
    assert sums_from_rollups(DAY)[(organization.pk, key.pk, "plugsky-nano")] == (2, 15, 25, 3)
    assert sums_from_rollups(DAY)[(organization.pk, None, "plugsky-nano")] == (2, 3, 3, 2)


def test_a_rollup_run_twice_gives_the_same_rows(traffic):
    usage_rollup_day(day=DAY)
    first = sorted(UsageDaily.objects.values_list("pk", "requests", "cost_micros"))
    usage_rollup_day(day=DAY)
    assert sorted(UsageDaily.objects.values_list("pk", "requests", "cost_micros")) == first


def test_a_recompute_follows_the_records(traffic):
    organization, key, other_key, _ = traffic
    usage_rollup_day(day=DAY)
    record(100, organization, key, "plugsky-nano", MIDNIGHT + timedelta(hours=6), 1, 1, 5)
    # A key deleted since: its records now belong to no key, and its rollup row must go.
    deleted_key_id = other_key.pk
    other_key.delete()

    usage_rollup_for_day(DAY.isoformat())

    rollups = sums_from_rollups(DAY)
    assert rollups == sums_from_records(DAY)
    assert rollups[(organization.pk, key.pk, "plugsky-nano")] == (3, 16, 26, 8)
    assert rollups[(organization.pk, None, "plugsky-nano")] == (3, 10, 6, 3)
    assert not any(group[1] == deleted_key_id for group in rollups)


def test_days_are_rolled_up_separately(traffic):
    usage_rollup_day(day=DAY - timedelta(days=1))
    usage_rollup_day(day=DAY + timedelta(days=1))
    assert sums_from_rollups(DAY - timedelta(days=1)) == sums_from_records(DAY - timedelta(days=1))
    assert UsageDaily.objects.filter(day=DAY).count() == 0
    assert UsageDaily.objects.count() == 2


def test_the_periodic_task_rolls_up_today_and_yesterday(organization):
    today = datetime.now(UTC)
    record(200, organization, None, "plugsky-nano", today, 3, 4, 5)
    record(201, organization, None, "plugsky-nano", today - timedelta(days=1), 1, 1, 1)
    assert usage_rollup_recent() == 2
    assert UsageDaily.objects.get(day=today.date()).cost_micros == 5
