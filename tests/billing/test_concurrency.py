"""200 concurrent calls against credit for 50, on real PostgreSQL with real threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from apps.accounts.selectors import personal_organization_for
from apps.billing.ledger import credit_adjust
from apps.billing.selectors import ledger_drifts
from apps.gateway.metering import Meter, meter_close, meter_open
from apps.onboarding.services import user_create
from apps.protocol.errors import APIError
from apps.providers.base import Usage
from apps.usage.models import UsageRecord
from tests.billing.conftest import PRICED
from tests.billing.helpers import account, ledger_sum

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 200
THREADS = 40  # each its own PostgreSQL connection; the server allows 100
WORST_CASE = 100 + 2 * 400  # 100 prompt tokens, max_tokens 400
AFFORDABLE = 50


def _funded_organization():  # type: ignore[no-untyped-def]
    user = user_create(email="busy@example.com")
    organization = personal_organization_for(user=user)
    credit_adjust(
        organization=organization,
        amount_micros=AFFORDABLE * WORST_CASE - 5_000_000,
        description="exactly 50 worst cases",
    )
    return organization


def _open(organization_id: int, number: int) -> Meter | APIError:
    try:
        return async_to_sync(meter_open)(
            request_id=f"req_concurrent_{number}",
            organization_id=organization_id,
            api_key_id=None,
            endpoint="chat.completions",
            entry=PRICED,
            max_prompt_tokens=100,
            max_completion_tokens=400,
            is_stream=True,
        )
    except APIError as refusal:
        return refusal


def _close(meter: Meter, number: int) -> int:
    if number % 5 == 0:  # the upstream failed before any output
        return async_to_sync(meter_close)(meter, usage=Usage(prompt_tokens=100), status=502)
    usage = Usage(prompt_tokens=100, completion_tokens=number % 400)
    return async_to_sync(meter_close)(meter, usage=usage, status=200)


def _in_threads(work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..REQUESTS-1) on THREADS threads that start together."""
    start = threading.Barrier(THREADS)

    def worker(first: int) -> list[Any]:
        start.wait()
        try:
            return [work(number) for number in range(first, REQUESTS, THREADS)]
        finally:
            connection.close()

    with ThreadPoolExecutor(THREADS) as pool:
        batches = list(pool.map(worker, range(THREADS)))
    results: list[Any] = [None] * REQUESTS
    for first, batch in enumerate(batches):
        results[first::THREADS] = batch
    return results


def test_concurrent_holds_never_overdraw_and_only_completed_calls_are_billed():
    organization = _funded_organization()

    opened = _in_threads(lambda number: _open(organization.pk, number))

    meters = {n: result for n, result in enumerate(opened) if isinstance(result, Meter)}
    refusals = [result for result in opened if isinstance(result, APIError)]
    assert len(meters) == AFFORDABLE
    assert len(refusals) == REQUESTS - AFFORDABLE
    assert {(r.status, r.code) for r in refusals} == {(429, "insufficient_quota")}
    assert account(organization).held_micros == AFFORDABLE * WORST_CASE
    assert account(organization).available_micros == 0

    costs = _in_threads(lambda number: _close(meters[number], number) if number in meters else 0)

    expected = sum(0 if number % 5 == 0 else 100 + 2 * (number % 400) for number in meters)
    assert sum(costs) == expected
    assert account(organization).balance_micros == AFFORDABLE * WORST_CASE - expected
    assert account(organization).held_micros == 0
    assert ledger_sum(organization) == account(organization).balance_micros
    assert UsageRecord.objects.count() == AFFORDABLE
    assert sum(UsageRecord.objects.values_list("cost_micros", flat=True)) == expected
    assert ledger_drifts() == []


def test_interleaved_calls_never_spend_credit_that_is_not_there():
    organization = _funded_organization()

    def call(number: int) -> int:
        meter = _open(organization.pk, number)
        if isinstance(meter, APIError):
            return 0
        usage = Usage(prompt_tokens=100, completion_tokens=400)
        return async_to_sync(meter_close)(meter, usage=usage, status=200)

    costs = _in_threads(call)

    # Every completed call cost its whole worst case, so exactly 50 could be paid for.
    assert sum(costs) == AFFORDABLE * WORST_CASE
    assert costs.count(WORST_CASE) == AFFORDABLE
    assert (account(organization).balance_micros, account(organization).held_micros) == (0, 0)
    assert ledger_drifts() == []
