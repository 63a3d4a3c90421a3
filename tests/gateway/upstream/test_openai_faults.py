"""Faults of OpenAI-compatible upstreams through the gateway: retries, fallback to the next
route, every route failing (OpenAI's envelope, no charge), the request's own 400, a stream cut
mid-way, and the circuit breaker. The fakes are separate servers, one per route."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.billing.pricing import call_cost_micros, cost_header_value, worst_case_cost_micros
from apps.protocol.openai import ChatCompletionRequest
from apps.providers.upstream import http
from apps.providers.upstream.breaker import BreakerState, CircuitBreaker, route_key
from apps.providers.upstream.openai import chat_prompt_bound
from apps.providers.upstream.tokens import count_tokens
from tests.fakes.openai_api import REQUEST_ID, Error, FakeOpenAI, Stream, openai_usage
from tests.gateway.upstream.conftest import (
    HELLO,
    assert_charged,
    books,
    call,
    catalog_entry,
    held_for,
    record_of,
    refused_url,
    route,
    served,
    upstream_model,
)

pytestmark = pytest.mark.xdist_group("live")

MODEL = "team-gpt"
ENTRY_PRICES = (150_000, 600_000)
SECOND_ROUTE_PRICES = (300_000, 1_200_000)  # the fallback vendor is dearer
CHAT = {"model": MODEL, "messages": HELLO, "max_tokens": 20}
STREAMED_CHAT = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
SECOND_ANSWER = Stream(texts=("Hi", " there"), usage=openai_usage(prompt=19, completion=3))
SERVER_ERROR = Error(500, "The server had an error while processing your request.",
                     type="server_error")  # fmt: skip
RATE_LIMITED = Error(429, "Rate limit reached for requests", type="requests",
                     code="rate_limit_exceeded", headers=(("retry-after", "1"),))  # fmt: skip


def _fake(servers: Any, reply: Stream | Error) -> tuple[FakeOpenAI, str]:
    fake = FakeOpenAI(api_key="sk-test")
    fake.reply = reply
    return fake, served(servers, fake) + "/v1"


def _two_routes(operator_catalog: Any, first_url: str, second_url: str) -> None:
    routes = [route(first_url), route(second_url, prices=SECOND_ROUTE_PRICES)]
    operator_catalog([upstream_model(MODEL, routes, prices=ENTRY_PRICES)])


def _cost(*, prompt_tokens: int, completion_tokens: int, route_index: int) -> int:
    return call_cost_micros(
        entry=catalog_entry(MODEL),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        route_index=route_index,
    )


def _first_route(servers: Any, fault: str) -> tuple[FakeOpenAI | None, str]:
    if fault == "refused":
        return None, refused_url()
    return _fake(servers, SERVER_ERROR if fault == "500" else RATE_LIMITED)


# --- Fallback -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "attempts", "least_wait_s"),
    [
        ("refused", None, 0.0),
        ("500", 3, 0.0),  # three attempts on the route (backoff between), then the next
        ("429", 3, 2.0),  # Retry-After: 1 honoured before each of the two retries
    ],
)
async def test_a_failing_first_route_falls_back_to_the_second_which_is_billed(
    async_client, live_key, servers, operator_catalog, fault, attempts, least_wait_s
):
    organization, raw_key = live_key
    first, first_url = _first_route(servers, fault)
    second, second_url = _fake(servers, SECOND_ANSWER)
    _two_routes(operator_catalog, first_url, second_url)
    before = await books(organization.pk)
    started = time.monotonic()
    answer = await call(async_client, raw_key, "/chat/completions", CHAT)
    assert time.monotonic() - started >= least_wait_s
    assert answer.status == 200, answer.body
    assert answer.body["choices"][0]["message"]["content"] == "Hi there"
    assert answer.body["usage"]["prompt_tokens"] == 19
    assert answer.body["usage"]["completion_tokens"] == 3
    assert len(second.received) == 1
    if first is not None:
        assert len(first.received) == attempts
    cost = _cost(prompt_tokens=19, completion_tokens=3, route_index=1)
    assert cost == 10  # ceil((19 * 300_000 + 3 * 1_200_000) / 1e6): the second route's prices
    assert answer.headers["x-plugsky-cost"] == cost_header_value(cost)
    record = await assert_charged(organization.pk, before, answer, cost_micros=cost)
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (200, 19, 3)
    assert (record.provider, record.route_index) == ("openai", 1)
    assert (record.upstream_model, record.upstream_request_id) == (
        "gpt-4o-mini-2024-07-18",
        REQUEST_ID,
    )
    # The hold covered the dearest route of the chain: the second.
    bound = chat_prompt_bound(ChatCompletionRequest.model_validate(CHAT))
    worst = worst_case_cost_micros(
        entry=catalog_entry(MODEL), prompt_tokens=bound, completion_tokens=20
    )
    assert worst == _cost(prompt_tokens=bound, completion_tokens=20, route_index=1)
    assert await held_for(answer) == worst


# --- Every route failing ------------------------------------------------------------------------


def _failing_route(servers: Any, fault: str) -> tuple[FakeOpenAI | None, str]:
    if fault == "refused":
        return None, refused_url()
    if fault == "timeout":
        return _fake(servers, Stream(delay_s=5.0))
    return _fake(servers, Error(int(fault), "upstream says no", type="server_error"))


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        (("500", "500"), 502),
        (("500", "refused"), 503),  # the last reason decides: nothing listens there
        (("timeout", "timeout"), 504),
    ],
)
async def test_every_route_failing_is_openais_envelope_and_costs_nothing(
    async_client, live_key, servers, operator_catalog, monkeypatch, faults, status
):
    organization, raw_key = live_key
    # Reads that give up at once; the fakes would answer only after 5 s.
    monkeypatch.setattr(http, "READ_TIMEOUT_S", 0.3)
    fakes, urls = zip(*(_failing_route(servers, fault) for fault in faults), strict=True)
    _two_routes(operator_catalog, *urls)
    before = await books(organization.pk)
    answer = await call(async_client, raw_key, "/chat/completions", CHAT)
    assert answer.status == status
    error = answer.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (
        "server_error",
        None,
        "upstream_unavailable",
    )
    assert error["message"].startswith("Every route of this model failed (2 in all)")
    # Each route had its three attempts.
    assert [len(fake.received) for fake in fakes if fake is not None] == [
        3 for fault in faults if fault != "refused"
    ]
    record = await assert_charged(organization.pk, before, answer, cost_micros=0)
    assert (record.status, record.error_code) == (status, "upstream_unavailable")


async def test_every_route_rate_limited_is_a_503_that_says_when_to_retry(
    async_client, live_key, servers, operator_catalog
):
    organization, raw_key = live_key
    (_, first_url), (_, second_url) = _fake(servers, RATE_LIMITED), _fake(servers, RATE_LIMITED)
    _two_routes(operator_catalog, first_url, second_url)
    before = await books(organization.pk)
    answer = await call(async_client, raw_key, "/chat/completions", CHAT)
    assert (answer.status, answer.body["error"]["code"]) == (503, "upstream_unavailable")
    assert answer.headers["retry-after"] == "1"  # the upstream's own hint, passed on
    await assert_charged(organization.pk, before, answer, cost_micros=0)


# --- The request's own fault ----------------------------------------------------------------------


async def test_an_upstream_400_is_passed_back_with_its_param_and_not_retried(
    async_client, live_key, servers, operator_catalog
):
    organization, raw_key = live_key
    refusal = Error(
        400,
        "Invalid value for 'temperature': must be at most 2.",
        param="temperature",
        code="invalid_value",
    )
    first, first_url = _fake(servers, refusal)
    second, second_url = _fake(servers, SECOND_ANSWER)
    _two_routes(operator_catalog, first_url, second_url)
    before = await books(organization.pk)
    answer = await call(async_client, raw_key, "/chat/completions", {**CHAT, "stream": True})
    assert answer.status == 400
    assert answer.body == {
        "error": {
            "message": "Invalid value for 'temperature': must be at most 2.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }
    assert (len(first.received), len(second.received)) == (1, 0)
    record = await assert_charged(organization.pk, before, answer, cost_micros=0)
    assert (record.status, record.error_code) == (400, "invalid_value")


# --- A stream cut after its first chunk -----------------------------------------------------------


def _prompt_estimate(messages: list[dict[str, str]], *, family: str) -> int:
    """What OpenAIProvider counts for a chat prompt before the upstream reports: the roles and
    texts, OpenAI's 3 tokens of framing per message and 3 to prime the answer."""
    text = "".join(message["role"] + message["content"] for message in messages)
    return count_tokens(text, family=family) + 3 * len(messages) + 3


async def test_a_stream_cut_mid_way_ends_with_an_error_event_and_done(
    async_client, live_key, servers, operator_catalog
):
    organization, raw_key = live_key
    # Chunks: the role, "Hello", then the connection drops; the usage chunk never comes.
    first, first_url = _fake(servers, Stream(texts=("Hello", " there", "!"), cut_after=2))
    second, second_url = _fake(servers, SECOND_ANSWER)
    _two_routes(operator_catalog, first_url, second_url)
    answer = await call(async_client, raw_key, "/chat/completions", STREAMED_CHAT)
    assert answer.status == 200
    events, done = answer.body
    assert done
    deltas = [event["choices"][0]["delta"] for event in events[:-1]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hello"}]
    assert set(events[-1]) == {"error"}
    assert events[-1]["error"]["type"] == "server_error"
    assert events[-1]["error"]["code"] == "upstream_unavailable"  # it broke the connection
    assert (len(first.received), len(second.received)) == (1, 0)  # committed: no fallback
    record = await record_of(answer.request_id)
    prompt = _prompt_estimate(HELLO, family="openai")
    assert (record.prompt_tokens, record.completion_tokens) == (
        prompt,
        count_tokens("Hello", family="openai"),
    )
    assert (record.status, record.error_code) == (502, "upstream_unavailable")
    assert record.is_stream
    after = await books(organization.pk)
    assert (after.held_micros, after.active_holds) == (0, 0)


async def test_a_stream_the_upstream_broke_is_recorded_for_what_was_streamed_and_not_billed(
    async_client, live_key, servers, operator_catalog
):
    # The billing rule (apps/gateway/metering.py): an upstream failure is not billed, also after
    # some output; the record keeps what was streamed, counted as the provider counts it.
    organization, raw_key = live_key
    _, first_url = _fake(servers, Stream(texts=("Hello", " there", "!"), cut_after=2))
    _, second_url = _fake(servers, SECOND_ANSWER)
    _two_routes(operator_catalog, first_url, second_url)
    before = await books(organization.pk)
    answer = await call(async_client, raw_key, "/chat/completions", STREAMED_CHAT)
    assert answer.status == 200
    record = await assert_charged(organization.pk, before, answer, cost_micros=0)
    assert record.status >= 500 and record.route_index == 0
    assert record.prompt_tokens == _prompt_estimate(HELLO, family="openai")
    assert record.completion_tokens == count_tokens("Hello", family="openai")


# --- The circuit breaker --------------------------------------------------------------------------


async def test_the_breaker_opens_after_repeated_failures_and_the_route_is_skipped(
    async_client, live_key, servers, operator_catalog, settings
):
    organization, raw_key = live_key
    settings.PLUGSKY_BREAKER_FAILURES = 2
    first, first_url = _fake(servers, SERVER_ERROR)
    second, second_url = _fake(servers, SECOND_ANSWER)
    _two_routes(operator_catalog, first_url, second_url)
    breaker = CircuitBreaker(route_key(catalog_entry(MODEL).upstream_routes[0]))
    tripping = await call(async_client, raw_key, "/chat/completions", CHAT)
    assert tripping.status == 200, tripping.body
    # Two failures open the breaker: the third attempt on the route is not made.
    assert len(first.received) == 2
    assert await breaker.state() == BreakerState.OPEN
    before = await books(organization.pk)
    skipping = await call(async_client, raw_key, "/chat/completions", CHAT)
    assert skipping.status == 200, skipping.body
    assert (len(first.received), len(second.received)) == (2, 2)
    cost = _cost(prompt_tokens=19, completion_tokens=3, route_index=1)
    record = await assert_charged(organization.pk, before, skipping, cost_micros=cost)
    assert record.route_index == 1
