"""Metering of one /v1 call: opened before the model runs, closed exactly once after.

`meter_open` holds the call's worst-case cost (max prompt tokens plus max output tokens) against the
organization's credit and spend limits, or raises a 429 APIError. `meter_close` records the
UsageRecord with the exact token counts, debits the cost and releases the hold in one transaction,
and returns the charged cost in micro-dollars. `meter_precheck` is the cheap read a serving module
does before expensive preparation (images to read, grammars to compile), so that an organization
without credit cannot make the gateway do that work for free.

Billing rule: a call is billed when the caller saw a success status (< 400), or when the client
disconnected (billed for exactly the tokens counted up to then) unless the status is an upstream or
server failure (>= 500). Any error status (an upstream or engine failure, a 4xx) is recorded but
not billed: the serving modules close a call the provider failed with the provider's status, also
when it failed after some output (the local engine reports its errors before the first token).

No hold outlives its request:
- Holding and settling run as tasks of their own, shielded from the caller's cancellation. A
  client that goes away while its hold is being written gets that hold settled at once (a 499
  with no tokens, not billed), not left active until it expires.
- While the call runs, the hold's expiry is pushed forward every third of BILLING_HOLD_TTL_S
  (`credit_hold_extend`), so `holds_release_stale` only releases the holds of a process that
  died, never of a long stream (after which the call could overdraw). Chosen over a TTL longer
  than any call: a call's length has no bound (many choices queued on a busy engine, a client
  that reads slowly), and the holds of a dead process should still come back within the TTL.
- Settlement that fails on a database error is retried with backoff. The caller waits for it at
  most `_SETTLE_WAIT_S`, then gets the call's price (the response still ends properly) while the
  same task keeps retrying; every failed attempt is logged with the request id and the amounts.
  An attempt whose COMMIT went through but whose answer was lost is recognised on the next one
  (AlreadySettled): a call is never charged twice.

The cost goes back to the caller in the `x-plugsky-cost` response header: US dollars as a decimal
string with exactly six fractional digits, e.g. `x-plugsky-cost: 0.000123` (123 micro-dollars;
"0.000000" for a call that was not billed). Build it with
`apps.billing.pricing.cost_header_value(cost_micros)`; the name is `pricing.COST_HEADER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError

from apps.billing.errors import AlreadySettled, InsufficientCredit, SpendLimitExceeded
from apps.billing.holds import credit_hold, credit_hold_extend, credit_precheck, credit_settle
from apps.billing.models import CreditHold
from apps.billing.pricing import call_cost_micros, usd_display, worst_case_cost_micros
from apps.catalog.entries import CatalogEntry
from apps.gateway.ratelimit import rate_limit_tokens_take
from apps.protocol.errors import APIError
from apps.providers.base import Usage
from apps.usage.models import UsageRecord
from apps.usage.services import CallOutcome
from plugsky_site.db import db_call

logger = logging.getLogger(__name__)

T = TypeVar("T")

# 429s that retrying cannot fix: the OpenAI SDKs honour this header and do not retry.
_NO_RETRY = {"x-should-retry": "false"}
# Pauses between settlement attempts; the last one repeats until _SETTLE_GIVE_UP_S.
_SETTLE_BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0)
_SETTLE_WAIT_S = 5.0  # how long a response waits for its settlement before it is sent anyway
_SETTLE_GIVE_UP_S = 3600.0
# A meter never closed (a bug) stops extending its hold after this, so the hold can expire.
_KEEP_ALIVE_MAX_S = 6 * 3600.0

# Tasks that must finish even when nobody awaits them any more (asyncio keeps weak references).
_RUNNING: set[asyncio.Task[Any]] = set()


def _spawn(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    task = asyncio.ensure_future(coroutine)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


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
    max_prompt_tokens: int = 0
    max_completion_tokens: int = 0
    is_tester: bool = False
    started: float = field(default_factory=time.monotonic)
    settlement: asyncio.Task[int] | None = field(default=None, repr=False)
    keeper: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def is_closed(self) -> bool:
        """Closing has begun: the call's settlement is running or done."""
        return self.settlement is not None


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


async def meter_precheck(
    *,
    organization_id: int,
    api_key_id: int | None,
    entry: CatalogEntry,
    max_prompt_tokens: int,
    max_completion_tokens: int,
) -> None:
    """429 at once (one read) when even this part of the worst case could not be held."""
    amount = worst_case_cost_micros(
        entry=entry, prompt_tokens=max_prompt_tokens, completion_tokens=max_completion_tokens
    )
    if amount == 0:
        return
    try:
        await db_call(
            credit_precheck,
            organization_id=organization_id,
            api_key_id=api_key_id,
            amount_micros=amount,
        )
    except InsufficientCredit as failure:
        raise insufficient_quota(failure) from None
    except SpendLimitExceeded as failure:
        raise spend_limit_exceeded(failure) from None


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
    # The per-key tokens-per-minute limit counts the worst case, as OpenAI's estimate does.
    await rate_limit_tokens_take(
        key_id=api_key_id, tokens=max_prompt_tokens + max_completion_tokens
    )
    worst_case = worst_case_cost_micros(
        entry=entry, prompt_tokens=max_prompt_tokens, completion_tokens=max_completion_tokens
    )
    meter_with = functools.partial(
        Meter,
        request_id=request_id,
        organization_id=organization_id,
        api_key_id=api_key_id,
        endpoint=endpoint,
        entry=entry,
        is_stream=is_stream,
        end_user=end_user,
        max_prompt_tokens=max_prompt_tokens,
        max_completion_tokens=max_completion_tokens,
        is_tester=is_tester,
    )
    holding = _spawn(
        db_call(
            credit_hold,
            organization_id=organization_id,
            api_key_id=api_key_id,
            request_id=request_id,
            amount_micros=worst_case,
        )
    )
    try:
        meter = meter_with(hold=await asyncio.shield(holding))
    except InsufficientCredit as failure:
        raise insufficient_quota(failure) from None
    except SpendLimitExceeded as failure:
        raise spend_limit_exceeded(failure) from None
    except asyncio.CancelledError:
        # The client left while the hold was being written: the thread commits it anyway.
        cleanup = _spawn(_settle_abandoned(holding, meter_with))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(cleanup)
        raise
    meter.keeper = _spawn(_keep_alive(meter))
    return meter


async def _settle_abandoned(
    holding: asyncio.Task[CreditHold], meter_with: Callable[..., Meter]
) -> None:
    try:
        hold = await holding
    except Exception:
        return  # refused or failed: nothing is held
    await meter_close(
        meter_with(hold=hold),
        usage=Usage(),
        status=499,
        error_code="client_disconnected",
        client_disconnected=True,
    )


async def _keep_alive(meter: Meter) -> None:
    """Push the hold's expiry forward while the call runs (see the module docstring)."""
    ttl_s = settings.BILLING_HOLD_TTL_S
    deadline = time.monotonic() + _KEEP_ALIVE_MAX_S
    while time.monotonic() < deadline:
        await asyncio.sleep(max(ttl_s / 3, 0.5))
        try:
            is_extended = await db_call(credit_hold_extend, hold=meter.hold, ttl_s=ttl_s)
        except DatabaseError:
            logger.warning("could not extend the hold of call %s; retrying", meter.request_id)
            continue
        if not is_extended:
            logger.error("hold of running call %s was released; it runs unheld", meter.request_id)
            return
    logger.error(
        "call %s still open after %d s; its hold may expire", meter.request_id, _KEEP_ALIVE_MAX_S
    )


async def meter_close(
    meter: Meter,
    *,
    usage: Usage,
    status: int,
    error_code: str = "",
    client_disconnected: bool = False,
) -> int:
    """Record and settle the call once; returns the charged cost in micro-dollars.

    Safe to be cancelled: the settlement runs on. When the database keeps failing, returns the
    call's price after `_SETTLE_WAIT_S` while the settlement is retried (module docstring).
    """
    if meter.is_closed:
        raise RuntimeError(f"meter {meter.request_id} closed twice")
    if meter.keeper is not None:
        meter.keeper.cancel()
    is_billed = status < 400 or (client_disconnected and status < 500)
    prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
    _check_bounds(meter, prompt_tokens, completion_tokens)
    cost_micros = (
        call_cost_micros(
            entry=meter.entry,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            route_index=usage.route_index,
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
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        provider=usage.provider,
        route_index=usage.route_index,
        upstream_model=usage.upstream_model,
        upstream_request_id=usage.upstream_request_id,
        latency_ms=int((time.monotonic() - meter.started) * 1000),
        status=status,
        error_code=error_code,
        is_stream=meter.is_stream,
        is_client_disconnect=client_disconnected,
        is_tester=meter.is_tester,
        end_user=meter.end_user,
    )
    meter.settlement = _spawn(_settle(meter.hold, outcome, cost_micros))
    try:
        return await asyncio.wait_for(asyncio.shield(meter.settlement), _SETTLE_WAIT_S)
    except TimeoutError:
        return cost_micros  # the call is answered at its price; settlement goes on retrying


def _check_bounds(meter: Meter, prompt_tokens: int, completion_tokens: int) -> None:
    """A count above the bounds the hold was computed from is a bug in a serving module."""
    if prompt_tokens > meter.max_prompt_tokens or completion_tokens > meter.max_completion_tokens:
        logger.error(
            "call %s (%s on %s) used %d prompt + %d completion tokens, above its bounds of "
            "%d + %d: its hold may not cover it",
            meter.request_id,
            meter.endpoint,
            meter.entry.id,
            prompt_tokens,
            completion_tokens,
            meter.max_prompt_tokens,
            meter.max_completion_tokens,
        )


async def _settle(hold: CreditHold, outcome: CallOutcome, cost_micros: int) -> int:
    """credit_settle until it succeeds (or is found done), retrying database errors."""
    started = time.monotonic()
    for attempt in itertools.count(1):
        try:
            record = await db_call(
                credit_settle, hold=hold, outcome=outcome, cost_micros=cost_micros
            )
            return record.cost_micros
        except AlreadySettled:
            # An earlier attempt committed, but its answer was lost with its connection.
            return await _settled_cost(outcome.request_id, default=cost_micros)
        except DatabaseError:
            is_last = time.monotonic() - started > _SETTLE_GIVE_UP_S
            _log_settle_failure(hold, outcome, cost_micros, attempt, is_last=is_last)
            if is_last:
                break
        except Exception:
            _log_settle_failure(hold, outcome, cost_micros, attempt, is_last=True)
            break
        await asyncio.sleep(_SETTLE_BACKOFF_S[min(attempt, len(_SETTLE_BACKOFF_S)) - 1])
    return cost_micros


async def _settled_cost(request_id: str, *, default: int) -> int:
    try:
        return await db_call(
            UsageRecord.objects.values_list("cost_micros", flat=True).get, request_id=request_id
        )
    except DatabaseError:
        return default  # it is recorded; only its amount could not be read back


def _log_settle_failure(
    hold: CreditHold, outcome: CallOutcome, cost_micros: int, attempt: int, *, is_last: bool
) -> None:
    logger.exception(
        "settlement of call %s failed (attempt %d%s): organization %d, %d prompt + %d completion "
        "tokens, cost %d µ$, hold %d µ$, status %d",
        outcome.request_id,
        attempt,
        "; GIVING UP, the call is unbilled and its hold is left to expire" if is_last else "",
        outcome.organization_id,
        outcome.prompt_tokens,
        outcome.completion_tokens,
        cost_micros,
        hold.amount_micros,
        outcome.status,
    )
