"""An upstream killed mid-run: an operator model with two routes (two OpenAI fakes, the second
dearer) takes a run of calls, four at a time, streamed and not; part-way through, the first
fake's server is stopped for real (its listening socket closed, so connections are refused).
Traffic moves to the fallback with no failed call and no lost or doubled charge.

The kill falls between two waves of calls, when none is in flight: a call cut mid-stream may
end with an error event by design (the first byte has reached the client, no fallback), so
killing during a wave would make the outcome depend on timing."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.core.management import call_command

from apps.billing.pricing import call_cost_micros
from apps.billing.selectors import ledger_drifts
from plugsky_site.db import db_call
from tests.fakes.openai_api import FakeOpenAI, Stream, openai_usage
from tests.fakes.server import serve
from tests.gateway.upstream.conftest import (
    FAKE_KEY,
    HELLO,
    Answer,
    books,
    call,
    catalog_entry,
    record_of,
    route,
    served,
    upstream_model,
)
from tests.sse import streamed_text

pytestmark = pytest.mark.xdist_group("live")

MODEL = "team-gpt"
ENTRY_PRICES = (150_000, 600_000)  # the first route's, by default
SECOND_ROUTE_PRICES = (300_000, 1_200_000)
CALLS, AT_ONCE, WAVES_BEFORE_KILL = 32, 4, 3


@dataclass(frozen=True)
class Upstream:
    """What one route's fake answers: the streamed pieces of text and the usage it reports."""

    pieces: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def stream(self) -> Stream:
        usage = openai_usage(prompt=self.prompt_tokens, completion=self.completion_tokens)
        return Stream(texts=self.pieces, usage=usage)


FIRST = Upstream(("Hello", " there!"), prompt_tokens=19, completion_tokens=3)
SECOND = Upstream(("Hi", " from", " the fallback"), prompt_tokens=23, completion_tokens=5)
UPSTREAMS = (FIRST, SECOND)


def _body(index: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 20}
    if index % 2:  # every other call streamed, so each wave has both kinds
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def _content(answer: Answer, *, is_stream: bool) -> str:
    if not is_stream:
        return str(answer.body["choices"][0]["message"]["content"])
    events, done = answer.body
    assert done
    assert all("error" not in event for event in events)
    return streamed_text(events)


def _fake(upstream: Upstream) -> FakeOpenAI:
    fake = FakeOpenAI(api_key=FAKE_KEY)
    fake.reply = upstream.stream()
    return fake


async def _wave(async_client: Any, raw_key: str, indexes: range) -> list[Answer]:
    calls = [call(async_client, raw_key, "/chat/completions", _body(i)) for i in indexes]
    return list(await asyncio.gather(*calls))


def _assert_refused(base_url: str) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{base_url}/chat/completions", json={}, timeout=2)


async def test_killing_the_first_upstream_mid_run_moves_traffic_with_exact_charges(
    async_client, live_key, servers, operator_catalog
):
    organization, raw_key = live_key
    first, second = _fake(FIRST), _fake(SECOND)
    answers: list[Answer] = []
    with ExitStack() as first_server:
        first_url = first_server.enter_context(serve(first)) + "/v1"
        second_url = served(servers, second) + "/v1"
        routes = [route(first_url), route(second_url, prices=SECOND_ROUTE_PRICES)]
        operator_catalog([upstream_model(MODEL, routes, prices=ENTRY_PRICES)])
        before = await books(organization.pk)
        for start in range(0, CALLS, AT_ONCE):
            if start == WAVES_BEFORE_KILL * AT_ONCE:
                first_server.close()  # uvicorn stopped, its socket closed
                _assert_refused(first_url)
            answers += await _wave(async_client, raw_key, range(start, start + AT_ONCE))
    killed_at = WAVES_BEFORE_KILL * AT_ONCE
    assert (len(first.received), len(second.received)) == (killed_at, CALLS - killed_at)
    expected_costs = [await _assert_answered(answer, index, killed_at=killed_at)
                      for index, answer in enumerate(answers)]  # fmt: skip
    after = await books(organization.pk)
    new_debits = after.usage_debits[len(before.usage_debits) :]
    assert sorted(new_debits) == sorted(-cost for cost in expected_costs)  # one per call
    assert before.balance_micros - after.balance_micros == sum(expected_costs)
    assert (after.held_micros, after.active_holds) == (0, 0)
    assert await db_call(ledger_drifts) == []
    await db_call(call_command, "billing_reconcile")  # raises CommandError on a drift


async def _assert_answered(answer: Answer, index: int, *, killed_at: int) -> int:
    """The call answered in full by the route alive at its time; returns what it should cost."""
    route_index = 0 if index < killed_at else 1
    upstream = UPSTREAMS[route_index]
    is_stream = "stream" in _body(index)
    assert answer.status == 200, (index, answer.body)
    assert _content(answer, is_stream=is_stream) == upstream.text
    cost = call_cost_micros(
        entry=catalog_entry(MODEL),
        prompt_tokens=upstream.prompt_tokens,
        completion_tokens=upstream.completion_tokens,
        route_index=route_index,
    )
    record = await record_of(answer.request_id)
    assert (record.status, record.is_stream, record.error_code) == (200, is_stream, "")
    assert (record.provider, record.route_index) == ("openai", route_index)
    assert (record.prompt_tokens, record.completion_tokens) == (
        upstream.prompt_tokens,
        upstream.completion_tokens,
    )
    assert record.cost_micros == cost
    return cost
