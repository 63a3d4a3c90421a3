"""A known set of billed calls, settled through the billing services, to check figures against."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apps.accounts.models import Organization
from apps.billing.holds import credit_hold, credit_settle
from apps.keys.models import APIKey
from apps.usage.services import CallOutcome
from tests.admin_api.conftest import recorded_at
from tests.billing.helpers import new_request_id

DAY = datetime(2026, 11, 10, tzinfo=UTC)
NEXT_DAY = DAY + timedelta(days=1)


@dataclass(frozen=True)
class Call:
    at: datetime
    api_key: APIKey | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    endpoint: str = "chat.completions"
    user: str = ""
    status: int = 200
    cached_tokens: int = 0


def settle(organization: Organization, call: Call) -> None:
    """Hold, then settle the call as the gateway would, with its record dated `call.at`."""
    key_id = call.api_key.pk if call.api_key else None
    hold = credit_hold(
        organization_id=organization.pk, api_key_id=key_id, request_id=new_request_id(),
        amount_micros=call.cost_micros + 1000,
    )  # fmt: skip
    outcome = CallOutcome(
        request_id=hold.request_id, organization_id=organization.pk, api_key_id=key_id,
        endpoint=call.endpoint, model=call.model, prompt_tokens=call.prompt_tokens,
        completion_tokens=call.completion_tokens, latency_ms=3, status=call.status,
        end_user=call.user, cached_tokens=call.cached_tokens,
    )  # fmt: skip
    with recorded_at(call.at):
        credit_settle(hold=hold, outcome=outcome, cost_micros=call.cost_micros)


def known_calls(key_a: APIKey, key_b: APIKey) -> list[Call]:
    hour = timedelta(hours=1)
    return [
        Call(
            DAY + 10 * hour + timedelta(minutes=5),
            key_a,
            "m-chat",
            100,
            20,
            1_234,
            user="alice",
            cached_tokens=60,
        ),
        Call(DAY + 10 * hour + timedelta(minutes=40), key_a, "m-chat", 50, 5, 777, user="bob"),
        Call(DAY + 11 * hour + timedelta(minutes=15), key_b, "m-other", 7, 3, 10),
        Call(DAY + 12 * hour, key_a, "m-embed", 42, 0, 42, endpoint="embeddings"),
        # A failed call (tester traffic, no key): a request, no tokens, no debit.
        Call(DAY + 13 * hour, None, "m-chat", 0, 0, 0, status=500),
        Call(NEXT_DAY + 9 * hour, key_b, "m-chat", 1000, 1, 999_999),
    ]
