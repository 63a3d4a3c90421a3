"""Anthropic and Gemini routes through the gateway, configured by their SDKs' variables
(ANTHROPIC_API_KEY + ANTHROPIC_BASE_URL, GEMINI_API_KEY + GEMINI_BASE_URL) pointing at the
loopback fakes: answers and streams in OpenAI's shapes, usage normalized as OpenAI counts it
and billed exactly, and a parameter Anthropic lacks refused before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from apps.billing.pricing import MICROS_PER_DOLLAR, call_cost_micros, cost_header_value
from tests.fakes.anthropic_api import FakeAnthropic, Reply
from tests.fakes.gemini_api import API_KEY as GEMINI_KEY
from tests.fakes.gemini_api import (
    MODEL_VERSION,
    GeminiFake,
    Stream,
    candidate,
    response,
    usage_metadata,
)
from tests.gateway.upstream.conftest import (
    HELLO,
    assert_charged,
    books,
    call,
    catalog_entry,
    served,
)
from tests.openapi import validate_response
from tests.sse import streamed_text

pytestmark = pytest.mark.xdist_group("live")

CLAUDE = "claude-haiku-4-5"
GEMINI = "gemini-2.5-flash"
STREAM = {"stream": True, "stream_options": {"include_usage": True}}
# Anthropic's input_tokens exclude the cache reads and writes; OpenAI's prompt_tokens include
# them, with the reads also in prompt_tokens_details.cached_tokens.
CACHED_REPLY = Reply(
    text="Hello there.",
    input_tokens=12,
    output_tokens=5,
    cache_read_input_tokens=30,
    cache_creation_input_tokens=8,
)
CLAUDE_USAGE = {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55,
                "prompt_tokens_details": {"cached_tokens": 30},
                "completion_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
# Gemini's promptTokenCount includes the cached tokens; its thoughts are outside
# candidatesTokenCount and inside OpenAI's completion_tokens.
GEMINI_USAGE = {"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14,
                "prompt_tokens_details": {"cached_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 4}}  # fmt: skip


@pytest.fixture
def anthropic(servers, vendor_env) -> FakeAnthropic:
    fake = FakeAnthropic()
    fake.reply = CACHED_REPLY
    vendor_env.setenv("ANTHROPIC_API_KEY", fake.api_key)
    vendor_env.setenv("ANTHROPIC_BASE_URL", served(servers, fake))
    return fake


@pytest.fixture
def gemini(servers, vendor_env) -> GeminiFake:
    fake = GeminiFake(model=GEMINI)
    vendor_env.setenv("GEMINI_API_KEY", GEMINI_KEY)
    vendor_env.setenv("GEMINI_BASE_URL", served(servers, fake))
    return fake


def _gemini_answer() -> Stream:
    return Stream(
        [
            response(candidate(text="Hello")),
            response(
                candidate(text=" there.", finish="STOP"),
                usage=usage_metadata(prompt=7, candidates=3, thoughts=4, cached=2),
            ),
        ]
    )


def _priced(model_id: str, usage: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(`usage` as the gateway answers it, with the call's cost; that cost in micros)."""
    cost = call_cost_micros(
        entry=catalog_entry(model_id),
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )
    return {**usage, "cost": cost / MICROS_PER_DOLLAR}, cost


async def _assert_recorded(
    organization_id: int, before: Any, answer: Any, *, cost: int, provider: str, names: Any
) -> None:
    record = await assert_charged(organization_id, before, answer, cost_micros=cost)
    assert (record.provider, record.route_index, record.status) == (provider, 0, 200)
    assert (record.upstream_model, record.upstream_request_id) == names


# --- Anthropic -------------------------------------------------------------------------------


async def test_a_claude_chat_is_answered_and_billed_with_cache_reads_in_prompt_tokens(
    async_client, live_key, anthropic
):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {"model": CLAUDE, "messages": HELLO, "max_tokens": 16}
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 200, answer.body
    validate_response("post", "/chat/completions", 200, answer.body)
    assert answer.body["model"] == CLAUDE
    assert answer.body["choices"][0]["message"]["content"] == "Hello there."
    assert answer.body["choices"][0]["finish_reason"] == "stop"
    usage, cost = _priced(CLAUDE, CLAUDE_USAGE)
    assert cost == 75  # ceil((50 * 1_000_000 + 5 * 5_000_000) / 1e6)
    assert answer.body["usage"] == usage
    assert answer.headers["x-plugsky-cost"] == cost_header_value(cost)
    (sent,) = anthropic.requests
    assert (sent["model"], sent["max_tokens"]) == (CLAUDE, 16)
    await _assert_recorded(organization.pk, before, answer, cost=cost, provider="anthropic",
                           names=("claude-fake-1", "req_01Fake"))  # fmt: skip


async def test_a_claude_stream_ends_with_the_normalized_usage(async_client, live_key, anthropic):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {"model": CLAUDE, "messages": HELLO, "max_tokens": 16, **STREAM}
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 200
    events, done = answer.body
    assert done
    assert streamed_text(events) == "Hello there."
    finishes = [choice["finish_reason"] for event in events for choice in event["choices"]]
    assert [reason for reason in finishes if reason] == ["stop"]
    usage, cost = _priced(CLAUDE, CLAUDE_USAGE)
    assert (events[-1]["choices"], events[-1]["usage"]) == ([], usage)
    await _assert_recorded(organization.pk, before, answer, cost=cost, provider="anthropic",
                           names=("claude-fake-1", "req_01Fake"))  # fmt: skip


async def test_n_above_one_on_claude_is_a_400_naming_n_and_costs_nothing(
    async_client, live_key, anthropic
):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {"model": CLAUDE, "messages": HELLO, "max_tokens": 16, "n": 2}
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 400
    assert answer.body == {
        "error": {
            "message": "The parameter 'n' is not supported by this model's upstream (Anthropic).",
            "type": "invalid_request_error",
            "param": "n",
            "code": "unsupported_parameter",
        }
    }
    assert anthropic.requests == []  # refused before anything was sent
    record = await assert_charged(organization.pk, before, answer, cost_micros=0)
    assert (record.status, record.error_code) == (400, "unsupported_parameter")


# --- Gemini ----------------------------------------------------------------------------------


async def test_a_gemini_chat_is_answered_and_billed_from_usage_metadata(
    async_client, live_key, gemini
):
    organization, raw_key = live_key
    gemini.script(_gemini_answer())
    before = await books(organization.pk)
    body = {"model": GEMINI, "messages": HELLO, "max_tokens": 16}
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 200, answer.body
    validate_response("post", "/chat/completions", 200, answer.body)
    assert answer.body["choices"][0]["message"]["content"] == "Hello there."
    assert answer.body["choices"][0]["finish_reason"] == "stop"
    usage, cost = _priced(GEMINI, GEMINI_USAGE)
    assert cost == 20  # ceil((7 * 300_000 + 7 * 2_500_000) / 1e6)
    assert answer.body["usage"] == usage
    (sent,) = gemini.received
    assert sent.path == f"/v1beta/models/{GEMINI}:generateContent"  # not streamed: one answer
    assert sent.body["generationConfig"]["maxOutputTokens"] == 16
    await _assert_recorded(organization.pk, before, answer, cost=cost, provider="gemini",
                           names=(MODEL_VERSION, "resp-gemini-1"))  # fmt: skip


async def test_a_gemini_stream_ends_with_the_normalized_usage(async_client, live_key, gemini):
    organization, raw_key = live_key
    gemini.script(_gemini_answer())
    before = await books(organization.pk)
    body = {"model": GEMINI, "messages": HELLO, "max_tokens": 16, **STREAM}
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 200
    events, done = answer.body
    assert done
    assert streamed_text(events) == "Hello there."
    usage, cost = _priced(GEMINI, GEMINI_USAGE)
    assert (events[-1]["choices"], events[-1]["usage"]) == ([], usage)
    (sent,) = gemini.received
    assert (sent.path, sent.query) == (f"/v1beta/models/{GEMINI}:streamGenerateContent", "alt=sse")
    await _assert_recorded(organization.pk, before, answer, cost=cost, provider="gemini",
                           names=(MODEL_VERSION, "resp-gemini-1"))  # fmt: skip
