from datetime import date, timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from apps.billing.errors import SpendLimitExceeded
from apps.billing.holds import credit_settle, holds_release_stale
from apps.billing.limits import spend_limit_remove, spend_limit_set
from apps.billing.models import SpendLimit
from apps.billing.selectors import month_start
from apps.keys.services import api_key_create
from apps.usage.models import UsageRecord
from apps.usage.services import usage_record_create
from tests.billing.helpers import hold_for, outcome_for


def settle(organization, amount, cost, api_key_id=None):  # type: ignore[no-untyped-def]
    hold = hold_for(organization, amount, api_key_id=api_key_id)
    outcome = outcome_for(hold.request_id, organization, api_key_id=api_key_id)
    return credit_settle(hold=hold, outcome=outcome, cost_micros=cost)


def limit_of(organization, api_key=None) -> SpendLimit:  # type: ignore[no-untyped-def]
    return SpendLimit.objects.get(organization=organization, api_key=api_key)


def test_settled_spend_counts_against_the_limit(organization):
    spend_limit_set(organization=organization, monthly_limit_micros=1_000)
    settle(organization, 900, 600)
    limit = limit_of(organization)
    assert (limit.spent_micros, limit.held_micros) == (600, 0)

    hold_for(organization, 400)  # 600 + 400 = the limit exactly
    with pytest.raises(SpendLimitExceeded) as refusal:
        hold_for(organization, 1)
    assert (refusal.value.is_key_limit, refusal.value.limit_micros) == (False, 1_000)
    assert refusal.value.committed_micros == 1_000


def test_a_new_month_starts_from_zero(organization):
    spend_limit_set(organization=organization, monthly_limit_micros=1_000)
    last_month = month_start(timezone.now()) - timedelta(days=1)
    SpendLimit.objects.update(month=last_month.replace(day=1), spent_micros=1_000)

    hold_for(organization, 1_000)

    limit = limit_of(organization)
    assert (limit.month, limit.spent_micros, limit.held_micros) == (
        month_start(timezone.now()),
        0,
        1_000,
    )


def test_a_new_limit_starts_from_this_months_usage(organization, api_key):
    key, _ = api_key
    settle(organization, 900, 300, api_key_id=key.pk)
    settle(organization, 900, 200)
    earlier = usage_record_create(
        outcome=outcome_for("req_last_month", organization, api_key_id=key.pk), cost_micros=5_000
    )
    UsageRecord.objects.filter(pk=earlier.pk).update(
        created_at=timezone.now().replace(day=1) - timedelta(days=2)
    )

    spend_limit_set(organization=organization, monthly_limit_micros=10_000)
    spend_limit_set(organization=organization, api_key=key, monthly_limit_micros=400)

    assert limit_of(organization).spent_micros == 500
    assert limit_of(organization, key).spent_micros == 300
    with pytest.raises(SpendLimitExceeded) as refusal:
        hold_for(organization, 101, api_key_id=key.pk)
    assert refusal.value.is_key_limit
    assert limit_of(organization).held_micros == 0  # the organization's reservation rolled back


def test_changing_a_limit_keeps_its_counters(organization):
    spend_limit_set(organization=organization, monthly_limit_micros=1_000)
    settle(organization, 900, 600)
    spend_limit_set(organization=organization, monthly_limit_micros=2_000)
    limit = limit_of(organization)
    assert (limit.monthly_limit_micros, limit.spent_micros) == (2_000, 600)
    assert SpendLimit.objects.count() == 1


def test_a_released_hold_gives_its_reservation_back(organization):
    spend_limit_set(organization=organization, monthly_limit_micros=1_000)
    hold = hold_for(organization, 800)
    holds_release_stale(now=hold.expires_at + timedelta(seconds=1))
    limit = limit_of(organization)
    assert (limit.spent_micros, limit.held_micros) == (0, 0)


def test_a_removed_limit_no_longer_applies(organization):
    spend_limit_set(organization=organization, monthly_limit_micros=0)
    with pytest.raises(SpendLimitExceeded):
        hold_for(organization, 1)
    spend_limit_remove(organization=organization)
    hold_for(organization, 1)


def test_a_key_of_another_organization_cannot_be_limited(organization, outsider):
    from apps.accounts.selectors import personal_organization_for

    other = personal_organization_for(user=outsider)
    foreign_key, _ = api_key_create(organization=other, created_by=outsider, name="theirs")
    with pytest.raises(PermissionDenied):
        spend_limit_set(organization=organization, api_key=foreign_key, monthly_limit_micros=1)
    assert not SpendLimit.objects.exists()


def test_month_means_the_utc_calendar_month():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    late_in_new_york = datetime(2026, 1, 31, 20, 0, tzinfo=ZoneInfo("America/New_York"))
    assert month_start(late_in_new_york) == date(2026, 2, 1)
