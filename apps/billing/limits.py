"""Monthly spend limits of an organization or one of its keys (holds reserve against them)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Organization
from apps.billing.ledger import credit_account_ensure
from apps.billing.models import CreditAccount, SpendLimit
from apps.billing.selectors import month_start
from apps.keys.models import APIKey
from apps.usage.selectors import usage_cost_since


def spend_limit_set(
    *, organization: Organization, api_key: APIKey | None = None, monthly_limit_micros: int
) -> SpendLimit:
    """Set or change the monthly spend limit of an organization, or of one of its keys.

    A call is refused when its worst case would take this UTC month's settled spend plus the
    calls in flight past the limit, so the limit is never exceeded. A new limit starts from what
    was already spent this month; calls in flight when it is set do not count against it.
    """
    if monthly_limit_micros < 0:
        raise ValueError("a spend limit cannot be negative")
    if api_key is not None and api_key.organization_id != organization.pk:
        raise PermissionDenied("The API key belongs to another organization.")
    scope = {"organization": organization, "api_key": api_key}
    month = month_start(timezone.now())
    with transaction.atomic():
        # Holds and settlements take the account row first; holding it keeps the sum exact.
        credit_account_ensure(organization_id=organization.pk)
        CreditAccount.objects.select_for_update().get(organization=organization)
        if SpendLimit.objects.filter(**scope).update(monthly_limit_micros=monthly_limit_micros):
            return SpendLimit.objects.get(**scope)
        spent = usage_cost_since(
            organization_id=organization.pk,
            api_key_id=api_key.pk if api_key else None,
            since=datetime(month.year, month.month, 1, tzinfo=UTC),
        )
        return SpendLimit.objects.create(
            **scope, monthly_limit_micros=monthly_limit_micros, month=month, spent_micros=spent
        )


def spend_limit_remove(*, organization: Organization, api_key: APIKey | None = None) -> None:
    """Remove the organization's (or the key's) monthly spend limit."""
    SpendLimit.objects.filter(organization=organization, api_key=api_key).delete()
