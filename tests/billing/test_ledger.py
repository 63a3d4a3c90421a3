import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction
from django.db.models import F

from apps.billing.ledger import credit_adjust, ledger_entry_create, trial_grant
from apps.billing.models import CreditAccount, EntryKind, LedgerEntry
from apps.billing.selectors import ledger_drifts
from apps.billing.tasks import billing_reconcile
from apps.onboarding.services import organization_create
from tests.billing.helpers import account, hold_for, ledger_sum


def test_a_new_organization_gets_five_dollars_of_trial_credit_once(organization, owner):
    entry = LedgerEntry.objects.get(organization=organization)
    assert (entry.kind, entry.amount_micros) == (EntryKind.TRIAL_GRANT, 5_000_000)
    assert account(organization).balance_micros == 5_000_000

    assert trial_grant(organization=organization) is None
    assert LedgerEntry.objects.filter(organization=organization).count() == 1
    assert account(organization).balance_micros == 5_000_000

    team = organization_create(name="Team", owner=owner)
    assert account(team).balance_micros == 5_000_000


def test_entries_and_the_cached_balance_move_together(organization):
    credit_adjust(organization=organization, amount_micros=-1_250_000, description="goodwill back")
    credit_adjust(organization=organization, amount_micros=250, description="rounding")
    assert account(organization).balance_micros == 3_750_250 == ledger_sum(organization)


def test_an_external_id_credits_once(organization):
    first = ledger_entry_create(
        organization_id=organization.pk,
        kind=EntryKind.TOPUP,
        amount_micros=10_000_000,
        external_id="cs_test_1",
    )
    again = ledger_entry_create(
        organization_id=organization.pk,
        kind=EntryKind.TOPUP,
        amount_micros=10_000_000,
        external_id="cs_test_1",
    )
    assert first is not None and again is None
    assert account(organization).balance_micros == 15_000_000


def test_usage_is_debited_only_by_settlement(organization):
    with pytest.raises(ValueError):
        ledger_entry_create(organization_id=organization.pk, kind=EntryKind.USAGE, amount_micros=-1)
    assert account(organization).balance_micros == 5_000_000


def test_the_database_refuses_to_change_or_delete_ledger_rows(organization):
    entries = LedgerEntry.objects.filter(organization=organization)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entries.update(amount_micros=F("amount_micros") + 1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entries.delete()
    assert entries.get().amount_micros == 5_000_000


def test_reconcile_passes_when_every_balance_matches(organization):
    hold_for(organization, 1_000)
    out = StringIO()
    call_command("billing_reconcile", stdout=out)
    assert "matches" in out.getvalue()
    assert ledger_drifts() == []


def test_reconcile_catches_a_balance_drift_injected_into_the_data(organization, outsider):
    CreditAccount.objects.filter(organization=organization).update(
        balance_micros=F("balance_micros") + 7
    )
    out = StringIO()
    with pytest.raises(CommandError, match=r"1 organization\(s\) drifted") as failure:
        call_command("billing_reconcile", stdout=out)
    assert failure.value.returncode == 1
    assert (
        f"organization {organization.pk}: balance 5000007 µ$, ledger 5000000 µ$; "
        "held 0 µ$, active holds 0 µ$"
    ) in out.getvalue()


def test_reconcile_catches_held_credit_without_a_hold(organization):
    CreditAccount.objects.filter(organization=organization).update(held_micros=500)
    [drift] = ledger_drifts()
    assert (drift.organization_id, drift.held_micros, drift.active_holds_micros) == (
        organization.pk,
        500,
        0,
    )


def test_the_periodic_reconciliation_reports_drift(organization, caplog):
    assert billing_reconcile() == 0
    CreditAccount.objects.filter(organization=organization).update(balance_micros=0)
    with caplog.at_level(logging.ERROR, logger="apps.billing.tasks"):
        assert billing_reconcile() == 1
    assert f"organization_id={organization.pk}" in caplog.text
