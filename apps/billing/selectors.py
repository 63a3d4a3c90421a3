"""Reads for billing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.db.models import BigIntegerField, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from apps.accounts.models import Membership, Organization, Role
from apps.billing import stripe_gateway
from apps.billing.models import CreditAccount, CreditHold, HoldStatus, LedgerEntry


def month_start(moment: datetime) -> date:
    """The first day of the UTC calendar month of `moment`: what "monthly" means in billing."""
    return moment.astimezone(UTC).date().replace(day=1)


def credit_account_for(*, organization: Organization) -> CreditAccount:
    """The organization's account; an unsaved empty one when nothing was ever credited."""
    account = CreditAccount.objects.filter(organization=organization).first()
    return account or CreditAccount(organization=organization)


def billing_contacts_for(*, organization_id: int) -> list[str]:
    """Email addresses of the organization's owners and admins."""
    return list(
        Membership.objects.filter(
            organization_id=organization_id,
            role__in=[Role.OWNER, Role.ADMIN],
            user__is_active=True,
        )
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )


def topups_are_configured() -> bool:
    return stripe_gateway.is_configured()


def topup_presets_cents() -> list[int]:
    return list(settings.BILLING_TOPUP_PRESETS_CENTS)


@dataclass(frozen=True)
class Drift:
    """An organization whose cached numbers disagree with the records they summarize."""

    organization_id: int
    balance_micros: int
    ledger_micros: int
    held_micros: int
    active_holds_micros: int


def _sum_of(queryset: QuerySet[Any], field: str) -> Coalesce:
    total = Subquery(
        queryset.values("organization_id").annotate(total=Sum(field)).values("total"),
        output_field=BigIntegerField(),
    )
    return Coalesce(total, Value(0), output_field=BigIntegerField())


def ledger_drifts() -> list[Drift]:
    """Organizations where balance != sum(ledger) or held != sum(active holds), in one query."""
    ledger = LedgerEntry.objects.filter(organization_id=OuterRef("pk"))
    holds = CreditHold.objects.filter(organization_id=OuterRef("pk"), status=HoldStatus.ACTIVE)
    rows = (
        Organization.objects.annotate(
            balance=Coalesce(F("credit_account__balance_micros"), Value(0)),
            held=Coalesce(F("credit_account__held_micros"), Value(0)),
            ledger=_sum_of(ledger, "amount_micros"),
            active_holds=_sum_of(holds, "amount_micros"),
        )
        .filter(~Q(balance=F("ledger")) | ~Q(held=F("active_holds")))
        .order_by("pk")
        .values_list("pk", "balance", "ledger", "held", "active_holds")
    )
    return [Drift(*row) for row in rows]
