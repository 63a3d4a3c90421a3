"""The ledger: append-only entries that move the cached balance with them; trial and adjustments."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from apps.accounts.models import Organization
from apps.billing.models import CreditAccount, EntryKind, LedgerEntry


def credit_account_ensure(*, organization_id: int) -> None:
    """Create the organization's CreditAccount row if it has none yet."""
    CreditAccount.objects.bulk_create(
        [CreditAccount(organization_id=organization_id)], ignore_conflicts=True
    )


def ledger_entry_create(
    *,
    organization_id: int,
    kind: EntryKind,
    amount_micros: int,
    external_id: str = "",
    description: str = "",
) -> LedgerEntry | None:
    """Append an entry and move the cached balance with it; None if its idempotency key was used."""
    if kind == EntryKind.USAGE:
        raise ValueError("usage is debited by credit_settle, together with its UsageRecord")
    with transaction.atomic():
        credit_account_ensure(organization_id=organization_id)
        try:
            with transaction.atomic():
                entry = LedgerEntry.objects.create(
                    organization_id=organization_id,
                    kind=kind,
                    amount_micros=amount_micros,
                    external_id=external_id,
                    description=description,
                )
        except IntegrityError:
            return None  # one trial per organization, one entry per external id
        CreditAccount.objects.filter(organization_id=organization_id).update(
            balance_micros=F("balance_micros") + amount_micros
        )
    return entry


def trial_grant(*, organization: Organization) -> LedgerEntry | None:
    """Grant the trial credit; a second grant to the same organization changes nothing."""
    return ledger_entry_create(
        organization_id=organization.pk,
        kind=EntryKind.TRIAL_GRANT,
        amount_micros=settings.BILLING_TRIAL_CREDIT_MICROS,
        description="Trial credit",
    )


def credit_adjust(
    *, organization: Organization, amount_micros: int, description: str
) -> LedgerEntry:
    """A manual correction by staff, positive or negative, with the reason."""
    entry = ledger_entry_create(
        organization_id=organization.pk,
        kind=EntryKind.ADJUSTMENT,
        amount_micros=amount_micros,
        description=description,
    )
    assert entry is not None  # no external id, so never a duplicate
    return entry
