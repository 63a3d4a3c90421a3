"""Checks shared by the fault tests: OpenAI's error envelope and the ledger's invariants."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db.models import Sum

from apps.accounts.models import Organization
from apps.billing.ledger import credit_adjust
from apps.billing.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from apps.usage.models import UsageRecord

# What a refused call may answer under load, and nothing else: out of credit, over a rate or
# concurrency limit, or the process overloaded (apps/protocol/errors.py service_unavailable).
REFUSALS = {
    (429, "insufficient_quota"),
    (429, "rate_limit_exceeded"),
    (503, "service_unavailable"),
}


def envelope_problem(body: Any) -> str | None:
    """Why `body` is not OpenAI's error envelope, or None when it is one."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return f"not {{'error': ...}}: {body!r:.300}"
    error = body["error"]
    if not isinstance(error, dict) or not {"message", "type", "param", "code"} <= set(error):
        return f"error lacks message/type/param/code: {error!r:.300}"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"error.message is not a non-empty string: {error!r:.300}"
    if not isinstance(error["type"], str) or not error["type"]:
        return f"error.type is not a non-empty string: {error!r:.300}"
    for name in ("param", "code"):
        if error[name] is not None and not isinstance(error[name], str):
            return f"error.{name} is neither a string nor null: {error!r:.300}"
    return None


def set_balance(organization: Organization, balance_micros: int) -> None:
    """Move the balance to exactly `balance_micros`, through a ledger adjustment."""
    account = CreditAccount.objects.filter(organization=organization).first()
    current = account.balance_micros if account else 0
    if balance_micros != current:
        credit_adjust(
            organization=organization,
            amount_micros=balance_micros - current,
            description="faults test balance",
        )


@dataclass(frozen=True)
class LedgerState:
    balance_micros: int
    held_micros: int
    ledger_sum_micros: int
    active_holds: int
    usage_cost_micros: int  # sum of UsageRecord.cost_micros
    usage_debits_micros: int  # minus the sum of the ledger's usage entries
    usage_records: int


def ledger_state(organization: Organization) -> LedgerState:
    account = CreditAccount.objects.get(organization=organization)
    entries = LedgerEntry.objects.filter(organization=organization)
    records = UsageRecord.objects.filter(organization=organization)
    return LedgerState(
        balance_micros=account.balance_micros,
        held_micros=account.held_micros,
        ledger_sum_micros=entries.aggregate(s=Sum("amount_micros"))["s"] or 0,
        active_holds=CreditHold.objects.filter(
            organization=organization, status=HoldStatus.ACTIVE
        ).count(),
        usage_cost_micros=records.aggregate(s=Sum("cost_micros"))["s"] or 0,
        usage_debits_micros=-(
            entries.filter(kind=EntryKind.USAGE).aggregate(s=Sum("amount_micros"))["s"] or 0
        ),
        usage_records=records.count(),
    )


def wait_until_settled(organization: Organization, *, timeout_s: float = 30) -> LedgerState:
    """Poll until the organization has no active hold (the server settles after the client)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = ledger_state(organization)
        if state.active_holds == 0 and state.held_micros == 0:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"holds still active {timeout_s:.0f} s after the load: {state}")
        time.sleep(0.2)


def assert_ledger_consistent(state: LedgerState, *, since: LedgerState) -> None:
    """balance >= 0, sum(ledger) == balance, no hold left, usage records == usage debits, and
    the balance moved since `since` by exactly what was recorded since then."""
    assert state.balance_micros >= 0, state
    assert state.ledger_sum_micros == state.balance_micros, state
    assert state.held_micros == 0 and state.active_holds == 0, state
    assert state.usage_cost_micros == state.usage_debits_micros, state
    charged = state.usage_cost_micros - since.usage_cost_micros
    assert since.balance_micros - state.balance_micros == charged, (since, state)
