from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import Organization
from apps.billing.errors import AlreadySettled, InsufficientCredit, SpendLimitExceeded
from apps.billing.holds import (
    credit_hold_extend,
    credit_precheck,
    credit_release,
    credit_settle,
    holds_release_stale,
)
from apps.billing.limits import spend_limit_set
from apps.billing.models import CreditHold, EntryKind, HoldStatus, LedgerEntry
from apps.billing.selectors import ledger_drifts
from apps.usage.models import UsageRecord
from tests.billing.helpers import account, hold_for, outcome_for, set_balance


def test_a_hold_reserves_and_settlement_charges_the_real_cost(organization):
    hold = hold_for(organization, 900)
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        5_000_000,
        900,
    )

    outcome = outcome_for(hold.request_id, organization, prompt_tokens=100, completion_tokens=40)
    record = credit_settle(hold=hold, outcome=outcome, cost_micros=180)

    assert record.cost_micros == 180
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        4_999_820,
        0,
    )
    debit = LedgerEntry.objects.get(kind=EntryKind.USAGE)
    assert (debit.amount_micros, debit.usage_record_id) == (-180, record.pk)
    assert CreditHold.objects.get(pk=hold.pk).status == HoldStatus.SETTLED
    assert ledger_drifts() == []


def test_a_hold_that_cannot_be_covered_changes_nothing(organization):
    set_balance(organization, 1_000)
    hold_for(organization, 600)
    with pytest.raises(InsufficientCredit) as refusal:
        hold_for(organization, 401)
    assert (refusal.value.needed_micros, refusal.value.available_micros) == (401, 400)
    assert account(organization).held_micros == 600
    assert CreditHold.objects.count() == 1
    hold_for(organization, 400)  # exactly what is left is fine
    assert account(organization).available_micros == 0


def test_an_organization_without_credit_cannot_hold(organization):
    set_balance(organization, 0)
    with pytest.raises(InsufficientCredit):
        hold_for(organization, 1)


def test_settling_twice_charges_once(organization):
    hold = hold_for(organization, 900)
    outcome = outcome_for(hold.request_id, organization, prompt_tokens=10)
    credit_settle(hold=hold, outcome=outcome, cost_micros=10)
    with pytest.raises(AlreadySettled):
        credit_settle(hold=hold, outcome=outcome, cost_micros=10)
    assert account(organization).balance_micros == 4_999_990
    assert account(organization).held_micros == 0
    assert UsageRecord.objects.count() == 1
    assert LedgerEntry.objects.filter(kind=EntryKind.USAGE).count() == 1


def test_a_cost_above_the_hold_is_clamped_to_the_hold(organization, caplog):
    hold = hold_for(organization, 100)
    record = credit_settle(
        hold=hold, outcome=outcome_for(hold.request_id, organization), cost_micros=150
    )
    assert record.cost_micros == 100
    assert account(organization).balance_micros == 4_999_900
    assert "above its hold" in caplog.text


def test_an_unbilled_call_is_recorded_and_its_hold_released(organization):
    hold = hold_for(organization, 900)
    outcome = outcome_for(hold.request_id, organization, prompt_tokens=100, status=502)
    record = credit_settle(hold=hold, outcome=outcome, cost_micros=0)
    assert (record.status, record.cost_micros) == (502, 0)
    assert not LedgerEntry.objects.filter(kind=EntryKind.USAGE).exists()
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        5_000_000,
        0,
    )


def test_stale_holds_are_released_once(organization):
    stale = hold_for(organization, 700)
    fresh = hold_for(organization, 300)
    CreditHold.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert holds_release_stale() == 1
    assert holds_release_stale() == 0
    assert account(organization).held_micros == 300
    assert CreditHold.objects.get(pk=stale.pk).status == HoldStatus.EXPIRED
    assert CreditHold.objects.get(pk=fresh.pk).status == HoldStatus.ACTIVE
    assert ledger_drifts() == []


def test_a_call_settled_after_its_hold_expired_is_still_billed(organization):
    hold = hold_for(organization, 700)
    assert holds_release_stale(now=hold.expires_at + timedelta(seconds=1)) == 1
    credit_settle(hold=hold, outcome=outcome_for(hold.request_id, organization), cost_micros=600)
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        4_999_400,
        0,
    )
    assert ledger_drifts() == []


def test_releasing_a_settled_hold_does_nothing(organization):
    hold = hold_for(organization, 700)
    credit_settle(hold=hold, outcome=outcome_for(hold.request_id, organization), cost_micros=5)
    assert credit_release(hold=hold) is False
    assert account(organization).held_micros == 0
    assert CreditHold.objects.get(pk=hold.pk).status == HoldStatus.SETTLED


def test_a_precheck_refuses_what_a_hold_would_refuse_and_reserves_nothing(organization):
    set_balance(organization, 1_000)
    hold_for(organization, 600)
    credit_precheck(organization_id=organization.pk, api_key_id=None, amount_micros=400)
    with pytest.raises(InsufficientCredit) as refusal:
        credit_precheck(organization_id=organization.pk, api_key_id=None, amount_micros=401)
    assert (refusal.value.needed_micros, refusal.value.available_micros) == (401, 400)
    assert account(organization).held_micros == 600
    assert CreditHold.objects.count() == 1


def test_a_precheck_names_the_spend_limit_a_hold_would_exceed(organization, api_key):
    key, _ = api_key
    spend_limit_set(organization=organization, api_key=key, monthly_limit_micros=500)
    hold_for(organization, 300, api_key_id=key.pk)
    credit_precheck(organization_id=organization.pk, api_key_id=key.pk, amount_micros=200)
    credit_precheck(organization_id=organization.pk, api_key_id=None, amount_micros=900)
    with pytest.raises(SpendLimitExceeded) as refusal:
        credit_precheck(organization_id=organization.pk, api_key_id=key.pk, amount_micros=201)
    assert refusal.value.is_key_limit
    assert (refusal.value.limit_micros, refusal.value.committed_micros) == (500, 300)

    spend_limit_set(organization=organization, monthly_limit_micros=100)
    with pytest.raises(SpendLimitExceeded) as refusal:
        credit_precheck(organization_id=organization.pk, api_key_id=key.pk, amount_micros=201)
    assert not refusal.value.is_key_limit  # the organization's first, as holds check them


def test_an_organization_without_an_account_fails_the_precheck(db):
    organization = Organization.objects.create(name="no account")
    with pytest.raises(InsufficientCredit):
        credit_precheck(organization_id=organization.pk, api_key_id=None, amount_micros=1)


def test_extending_a_hold_moves_only_an_active_holds_expiry(organization):
    hold = hold_for(organization, 700)
    assert credit_hold_extend(hold=hold, ttl_s=3_600) is True
    expires_at = CreditHold.objects.get(pk=hold.pk).expires_at
    assert expires_at > timezone.now() + timedelta(seconds=3_500)
    assert holds_release_stale(now=hold.expires_at + timedelta(seconds=1)) == 0

    credit_settle(hold=hold, outcome=outcome_for(hold.request_id, organization), cost_micros=5)
    assert credit_hold_extend(hold=hold, ttl_s=7_200) is False
    assert CreditHold.objects.get(pk=hold.pk).expires_at == expires_at
