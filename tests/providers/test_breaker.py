"""The circuit breaker against the test process's own Redis database: opening after N failures,
the cool-down, the half-open probe, state shared by separate instances (as by separate
processes), and failing open when Redis is down."""

from __future__ import annotations

import asyncio
import logging

from apps.catalog.entries import UpstreamRoute
from apps.providers.upstream.breaker import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Verdict,
    route_key,
)

KEY = "openai|http://10.0.0.5:8080/v1|llama-3.1-8b"
POLICY = BreakerPolicy(failures=5, window_s=60, cooldown_s=30, probe_ttl_s=30)
# For the tests that wait for the cool-down to end: long enough for a slow machine to check
# the open state before it ends.
SHORT = BreakerPolicy(failures=5, window_s=60, cooldown_s=0.3, probe_ttl_s=30)
COOLED_S = 0.45


async def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        await breaker.failed()


async def test_it_opens_after_the_threshold_of_consecutive_failures():
    breaker = CircuitBreaker(KEY, policy=POLICY)

    await _fail(breaker, 4)
    assert (await breaker.state(), bool(await breaker.allow())) == (BreakerState.CLOSED, True)

    await breaker.failed()
    assert (await breaker.state(), bool(await breaker.allow())) == (BreakerState.OPEN, False)


async def test_a_success_starts_the_count_again():
    breaker = CircuitBreaker(KEY, policy=POLICY)

    await _fail(breaker, 4)
    await breaker.succeeded()
    await _fail(breaker, 4)

    assert await breaker.state() is BreakerState.CLOSED


async def test_a_success_on_a_clean_route_writes_nothing_and_forgets_no_later_failure():
    breaker = CircuitBreaker(KEY, policy=POLICY)
    verdict = await breaker.allow()
    assert verdict is Verdict.CLEAN
    await _fail(CircuitBreaker(KEY, policy=POLICY), 4)  # another call fails meanwhile

    await breaker.succeeded(verdict=verdict)  # began before those failures: proves nothing
    await breaker.failed()
    assert await breaker.state() is BreakerState.OPEN


async def test_a_success_after_failures_on_record_forgets_them():
    breaker = CircuitBreaker(KEY, policy=POLICY)
    await _fail(breaker, 4)
    verdict = await breaker.allow()
    assert verdict is Verdict.ALLOWED

    await breaker.succeeded(verdict=verdict)
    await breaker.failed()
    assert await breaker.state() is BreakerState.CLOSED
    assert await breaker.allow() is Verdict.ALLOWED  # one failure on record again


async def test_the_failure_count_lapses_after_a_quiet_window():
    breaker = CircuitBreaker(KEY, policy=BreakerPolicy(failures=3, window_s=0.5))

    await _fail(breaker, 2)
    await asyncio.sleep(0.7)
    await breaker.failed()

    assert await breaker.state() is BreakerState.CLOSED
    await _fail(breaker, 2)
    assert await breaker.state() is BreakerState.OPEN


async def test_after_the_cool_down_one_probe_goes_and_its_success_closes():
    breaker = CircuitBreaker(KEY, policy=SHORT)
    await _fail(breaker, 5)
    await asyncio.sleep(COOLED_S)

    assert await breaker.state() is BreakerState.HALF_OPEN
    assert bool(await breaker.allow()) is True
    assert bool(await breaker.allow()) is False  # the probe is out: everyone else still skips

    await breaker.succeeded()
    assert await breaker.state() is BreakerState.CLOSED
    assert [await breaker.allow() for _ in range(3)] == [Verdict.CLEAN] * 3


async def test_a_failed_probe_opens_again_for_a_whole_cool_down():
    breaker = CircuitBreaker(KEY, policy=SHORT)
    await _fail(breaker, 5)
    await asyncio.sleep(COOLED_S)
    assert bool(await breaker.allow()) is True

    await breaker.failed()  # one failure, not five: the probe decides

    assert (await breaker.state(), bool(await breaker.allow())) == (BreakerState.OPEN, False)
    await asyncio.sleep(COOLED_S)
    assert (await breaker.state(), bool(await breaker.allow())) == (BreakerState.HALF_OPEN, True)


async def test_a_probe_that_never_reports_frees_its_lease():
    breaker = CircuitBreaker(KEY, policy=BreakerPolicy(failures=1, cooldown_s=0.1, probe_ttl_s=0.3))
    await breaker.failed()
    await asyncio.sleep(0.15)
    assert bool(await breaker.allow()) is True
    assert bool(await breaker.allow()) is False

    await asyncio.sleep(COOLED_S)  # the probe's process died

    assert bool(await breaker.allow()) is True


async def test_two_processes_share_one_state():
    here, there = CircuitBreaker(KEY, policy=SHORT), CircuitBreaker(KEY, policy=SHORT)

    await _fail(here, 3)
    await _fail(there, 2)

    assert (await here.allow(), await there.allow()) == (Verdict.REFUSED, Verdict.REFUSED)
    await asyncio.sleep(COOLED_S)
    assert await here.allow() is Verdict.ALLOWED  # here holds the probe ...
    assert await there.allow() is Verdict.REFUSED  # ... so there does not get one
    await here.succeeded()
    assert await there.state() is BreakerState.CLOSED


async def test_routes_have_breakers_of_their_own():
    failing = CircuitBreaker(KEY, policy=POLICY)
    other = CircuitBreaker(KEY.replace("llama-3.1-8b", "qwen"), policy=POLICY)

    await _fail(failing, 5)

    assert (await failing.allow(), await other.allow()) == (Verdict.REFUSED, Verdict.CLEAN)


def test_the_key_names_the_api_the_replicas_and_the_model():
    route = UpstreamRoute(
        provider="openai", model="llama", base_urls=("http://a:1/v1", "http://b:1/v1")
    )

    assert route_key(route) == "openai|http://a:1/v1,http://b:1/v1|llama"


def test_the_policy_reads_the_settings(settings):
    settings.PLUGSKY_BREAKER_FAILURES = 2
    settings.PLUGSKY_BREAKER_COOLDOWN_S = 7.5

    policy = BreakerPolicy.from_settings()

    assert (policy.failures, policy.window_s, policy.cooldown_s, policy.probe_ttl_s) == (
        2,
        60.0,
        7.5,
        30.0,
    )
    assert CircuitBreaker(KEY).policy == policy


async def test_with_redis_down_it_fails_open_and_logs_once(settings, caplog):
    breaker = CircuitBreaker(KEY, policy=BreakerPolicy(failures=1))
    assert bool(await breaker.allow()) is True  # Redis answers: no outage in progress
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    with caplog.at_level(logging.WARNING, logger="apps.providers.upstream.breaker"):
        await _fail(breaker, 3)
        assert bool(await breaker.allow()) is True
        assert await breaker.state() is BreakerState.CLOSED

    logged = [r.getMessage() for r in caplog.records if r.name == "apps.providers.upstream.breaker"]
    assert len(logged) == 1
    assert logged[0].startswith("Redis is unreachable, the upstream circuit breaker fails open: ")
