"""Builders shared by the billing tests."""

from __future__ import annotations

import itertools

from apps.accounts.models import Organization
from apps.billing.holds import credit_hold
from apps.billing.ledger import credit_adjust
from apps.billing.models import CreditAccount, LedgerEntry
from apps.usage.services import CallOutcome

_request_ids = itertools.count(1)


def new_request_id() -> str:
    return f"req_test_{next(_request_ids)}"


def set_balance(organization: Organization, balance_micros: int) -> None:
    """Move the balance to exactly `balance_micros`, through the ledger."""
    current = CreditAccount.objects.get(organization=organization).balance_micros
    if balance_micros != current:
        credit_adjust(
            organization=organization,
            amount_micros=balance_micros - current,
            description="test balance",
        )


def account(organization: Organization) -> CreditAccount:
    return CreditAccount.objects.get(organization=organization)


def ledger_sum(organization: Organization) -> int:
    return sum(
        LedgerEntry.objects.filter(organization=organization).values_list(
            "amount_micros", flat=True
        )
    )


def outcome_for(
    hold_request_id: str,
    organization: Organization,
    *,
    api_key_id: int | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    status: int = 200,
) -> CallOutcome:
    return CallOutcome(
        request_id=hold_request_id,
        organization_id=organization.pk,
        api_key_id=api_key_id,
        endpoint="chat.completions",
        model="test-priced",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=5,
        status=status,
    )


def hold_for(organization: Organization, amount_micros: int, api_key_id: int | None = None):  # type: ignore[no-untyped-def]
    return credit_hold(
        organization_id=organization.pk,
        api_key_id=api_key_id,
        request_id=new_request_id(),
        amount_micros=amount_micros,
    )
