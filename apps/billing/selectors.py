"""Reads for billing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.db.models import BigIntegerField, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Trunc

from apps.accounts.models import Membership, Organization, Role
from apps.billing import stripe_gateway
from apps.billing.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry


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


# --- Costs, holds and grants (the organization admin API) ----------------------------------------

_COST_GROUP_COLUMNS = {"line_item": "usage_record__model", "api_key_id": "usage_record__api_key_id"}


@dataclass(frozen=True)
class CostBucketRow:
    """The usage debits of one group in one UTC day; a group is None when not grouped by it."""

    day_start: datetime
    model: str | None
    api_key_id: int | None
    amount_micros: int


def usage_debits_buckets(
    *,
    organization_id: int,
    start: datetime,
    end: datetime,
    group_by: Sequence[str] = (),
    api_key_ids: Sequence[int] = (),
) -> list[CostBucketRow]:
    """What the ledger debited for usage per UTC day in [start, end), as positive micro-dollars;
    `group_by` "line_item" (the model) and/or "api_key_id"."""
    entries = LedgerEntry.objects.filter(
        organization_id=organization_id,
        kind=EntryKind.USAGE,
        created_at__gte=start,
        created_at__lt=end,
    )
    if api_key_ids:
        entries = entries.filter(usage_record__api_key_id__in=list(api_key_ids))
    columns = [_COST_GROUP_COLUMNS[name] for name in group_by]
    rows = (
        entries.annotate(day=Trunc("created_at", "day", tzinfo=UTC))
        .values("day", *columns)
        .annotate(debited=Sum("amount_micros"))
        .order_by("day", *columns)
    )
    return [
        CostBucketRow(
            day_start=row["day"],
            model=row.get("usage_record__model"),
            api_key_id=row.get("usage_record__api_key_id"),
            amount_micros=-(row["debited"] or 0),
        )
        for row in rows
    ]


def active_holds_for(*, organization_id: int) -> QuerySet[CreditHold]:
    """The credit reserved by the organization's calls in flight, oldest first."""
    return CreditHold.objects.filter(
        organization_id=organization_id, status=HoldStatus.ACTIVE
    ).order_by("created_at", "pk")


def credit_grants_for(*, organization_id: int, limit: int = 100) -> QuerySet[LedgerEntry]:
    """The latest entries other than usage (trial, top-ups, refunds, adjustments), newest first."""
    return (
        LedgerEntry.objects.filter(organization_id=organization_id)
        .exclude(kind=EntryKind.USAGE)
        .order_by("-created_at", "-pk")[:limit]
    )
