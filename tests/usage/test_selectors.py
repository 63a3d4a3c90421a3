"""usage_buckets over windows that do not fall on minutes: the records fill every partial minute."""

from datetime import timedelta

import pytest

from apps.usage.rollups import SETTLE_MARGIN, usage_rollup_advance
from apps.usage.selectors import usage_buckets
from tests.usage.conftest import MIDNIGHT, NOON

SECOND = timedelta(seconds=1)


@pytest.mark.parametrize("rolled_up", [False, True])
@pytest.mark.parametrize(
    ("start", "end", "requests"),
    [
        (MIDNIGHT + 6 * SECOND, MIDNIGHT + 31 * SECOND, 2),  # inside one minute: 00:00:06, :30
        (MIDNIGHT + 31 * SECOND, MIDNIGHT + 61 * SECOND, 2),  # across a minute: :59, 00:01:00
        (MIDNIGHT - 30 * SECOND, MIDNIGHT + 5 * SECOND, 0),  # ends just before 00:00:05
        (MIDNIGHT, MIDNIGHT + timedelta(days=1), 8),
    ],
)
def test_partial_minutes_at_either_end(traffic, rolled_up, start, end, requests):  # type: ignore[no-untyped-def]
    organization = traffic[0]
    if rolled_up:
        usage_rollup_advance(now=NOON + timedelta(days=1) + SETTLE_MARGIN)
    rows = usage_buckets(organization_id=organization.pk, start=start, end=end, width="day")
    assert sum(row.requests for row in rows) == requests
    assert all(row.bucket_start.tzinfo is not None for row in rows)
