"""Metering of one /v1 call: opened before the model runs, closed exactly once after.

`meter_open` holds the call's worst-case cost (max prompt tokens plus max output tokens) against the
organization's credit and spend limits, or raises a 429 APIError. `meter_close` records the
UsageRecord with the exact token counts, debits the cost and releases the hold in one transaction,
and returns the charged cost in micro-dollars.

Billing rule: a call is billed when the caller saw a success status (< 400), or when the client
disconnected (billed for exactly the tokens counted up to then) unless the status is an upstream or
server failure (>= 500). Any error status (an upstream or engine failure, a 4xx) is recorded but
not billed: the serving modules close a call the provider failed with the provider's status, also
when it failed after some output (the local engine reports its errors before the first token).

The cost goes back to the caller in the `x-plugsky-cost` response header: US dollars as a decimal
string with exactly six fractional digits, e.g. `x-plugsky-cost: 0.000123` (123 micro-dollars;
"0.000000" for a call that was not billed). Build it with
`apps.billing.pricing.cost_header_value(cost_micros)`; the name is `pricing.COST_HEADER`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async

from apps.billing.errors import InsufficientCredit, SpendLimitExceeded
from apps.billing.models import CreditHold
from apps.billing.pricing import call_cost_micros, usd_display
from apps.billing.services import credit_hold, credit_settle
from apps.catalog.entries import CatalogEntry
from apps.gateway.errors import APIError
from apps.usage.services import CallOutcome

# 429s that retrying cannot fix: the OpenAI SDKs honour this header and do not retry.
_NO_RETRY = {"x-should-retry": "false"}


@dataclass
class Meter:
    request_id: str
    organization_id: int
    api_key_id: int | None
    endpoint: str
    entry: CatalogEntry
    is_stream: bool
    end_user: str
    hold: CreditHold
    is_tester: bool = False
    started: float = field(default_factory=time.monotonic)
    is_closed: bool = False


def insufficient_quota(failure: InsufficientCredit) -> APIError:
    return APIError(
        "You exceeded your current quota: this request needs up to "
        f"{usd_display(failure.needed_micros)} of credit and your organization has "
        f"{usd_display(max(failure.available_micros, 0))} available. "
        "Add credit on the Billing page of your Plugsky dashboard.",
        status=429,
        type="insufficient_quota",
        code="insufficient_quota",
        headers=_NO_RETRY,
    )


def spend_limit_exceeded(failure: SpendLimitExceeded) -> APIError:
    owner = "this API key" if failure.is_key_limit else "your organization"
    return APIError(
        f"This request would exceed the monthly spend limit of {owner}: "
        f"{usd_display(failure.limit_micros)} per month, "
        f"{usd_display(failure.committed_micros)} already spent or reserved this month "
        "(UTC). Raise the limit in your Plugsky dashboard or wait for the next month.",
        status=429,
        type="insufficient_quota",
        code="spend_limit_exceeded",
        headers=_NO_RETRY,
    )


async def meter_open(
    *,
    request_id: str,
    organization_id: int,
    api_key_id: int | None,
    endpoint: str,
    entry: CatalogEntry,
    max_prompt_tokens: int,
    max_completion_tokens: int,
    is_stream: bool,
    end_user: str = "",
    is_tester: bool = False,
) -> Meter:
    """Hold the worst case of max_prompt_tokens + max_completion_tokens, or raise a 429."""
    worst_case = call_cost_micros(
        entry=entry, prompt_tokens=max_prompt_tokens, completion_tokens=max_completion_tokens
    )
    try:
        hold = await sync_to_async(credit_hold)(
            organization_id=organization_id,
            api_key_id=api_key_id,
            request_id=request_id,
            amount_micros=worst_case,
        )
    except InsufficientCredit as failure:
        raise insufficient_quota(failure) from None
    except SpendLimitExceeded as failure:
        raise spend_limit_exceeded(failure) from None
    return Meter(
        request_id=request_id,
        organization_id=organization_id,
        api_key_id=api_key_id,
        endpoint=endpoint,
        entry=entry,
        is_stream=is_stream,
        end_user=end_user,
        hold=hold,
        is_tester=is_tester,
    )


async def meter_close(
    meter: Meter,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    status: int,
    error_code: str = "",
    client_disconnected: bool = False,
) -> int:
    """Record and settle the call once; returns the charged cost in micro-dollars."""
    if meter.is_closed:
        raise RuntimeError(f"meter {meter.request_id} closed twice")
    meter.is_closed = True
    is_billed = status < 400 or (client_disconnected and status < 500)
    cost_micros = (
        call_cost_micros(
            entry=meter.entry, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        if is_billed
        else 0
    )
    outcome = CallOutcome(
        request_id=meter.request_id,
        organization_id=meter.organization_id,
        api_key_id=meter.api_key_id,
        endpoint=meter.endpoint,
        model=meter.entry.id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=int((time.monotonic() - meter.started) * 1000),
        status=status,
        error_code=error_code,
        is_stream=meter.is_stream,
        is_client_disconnect=client_disconnected,
        is_tester=meter.is_tester,
        end_user=meter.end_user,
    )
    record = await sync_to_async(credit_settle)(
        hold=meter.hold, outcome=outcome, cost_micros=cost_micros
    )
    return record.cost_micros
