"""An operator route to a real llama.cpp server (OpenAI-compatible): chat, stream, tools and
completions through the gateway, each billed exactly for the tokens llama.cpp reported."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from apps.billing.pricing import MICROS_PER_DOLLAR, call_cost_micros, cost_header_value
from tests.gateway.upstream.conftest import (
    Tap,
    assert_charged,
    books,
    call,
    catalog_entry,
    record_of,
    route,
    served,
    upstream_model,
)
from tests.openapi import validate_response
from tests.sse import streamed_text
from tests.upstreams.llamacpp import MODEL as LLAMACPP_MODEL
from tests.upstreams.llamacpp import (  # noqa: F401 - the fixtures `llamacpp`, `llamacpp_embedder`
    LlamaCppServer,
    llamacpp_embedder_fixture,
    llamacpp_fixture,
)

pytestmark = pytest.mark.xdist_group("live")

MODEL = "team-llama"
KEY_ENV = "TEAM_LLAMA_KEY"
QUESTION = [{"role": "user", "content": "Name three colours."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def tap(llamacpp: LlamaCppServer, servers, operator_catalog, vendor_env) -> Tap:
    """team-llama routed, as in the operator file of issue 11, to llama.cpp (through a tap)."""
    vendor_env.setenv(KEY_ENV, llamacpp.api_key)
    recorder = Tap(upstream=llamacpp.base_url)
    base_url = served(servers, recorder) + "/v1"
    routes = [route(base_url, model=LLAMACPP_MODEL, api_key_env=KEY_ENV)]
    capabilities = ["chat", "completions", "streaming", "tools"]
    operator_catalog([upstream_model(MODEL, routes, capabilities=capabilities)])
    return recorder


def _cost(usage: dict[str, Any]) -> int:
    return call_cost_micros(
        entry=catalog_entry(MODEL),
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )


def _assert_reported(usage: dict[str, Any], reported: dict[str, Any]) -> None:
    """The gateway's usage is llama.cpp's own, to the token."""
    assert usage["prompt_tokens"] == reported["prompt_tokens"] > 0
    assert usage["completion_tokens"] == reported["completion_tokens"] > 0
    assert usage["total_tokens"] == reported["prompt_tokens"] + reported["completion_tokens"]
    cached = (reported.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert usage["prompt_tokens_details"]["cached_tokens"] == cached


def _assert_sent_upstream(tap: Tap, *, max_tokens: int) -> dict[str, Any]:
    """One call reached llama.cpp, under its own model name, streamed with usage."""
    assert len(tap.bodies) == len(tap.usages) == 1
    sent = tap.bodies[0]
    assert sent["model"] == LLAMACPP_MODEL
    assert (sent["stream"], sent["stream_options"]) == (True, {"include_usage": True})
    assert sent["max_tokens"] == max_tokens
    return dict(sent)


async def _assert_billed(
    organization_id: int, before: Any, answer: Any, usage: Any, tap: Tap
) -> None:
    cost = _cost(usage)
    assert cost > 0
    if isinstance(answer.body, dict):
        assert answer.headers["x-plugsky-cost"] == cost_header_value(cost)
    else:  # a stream's headers leave before its cost is known: the usage chunk carries it
        assert usage["cost"] == cost / MICROS_PER_DOLLAR
    record = await assert_charged(organization_id, before, answer, cost_micros=cost)
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert (record.model, record.status) == (MODEL, 200)
    assert (record.provider, record.route_index) == ("openai", 0)
    assert (record.upstream_model, record.upstream_request_id) == tap.names[0]
    assert record.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]


async def test_chat_is_answered_and_billed_for_llamacpps_usage(async_client, live_key, tap):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, "temperature": 0}
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 200, answer.body
    validate_response("post", "/chat/completions", 200, answer.body)
    assert answer.body["object"] == "chat.completion"
    assert answer.body["model"] == MODEL
    assert answer.body["choices"][0]["message"]["content"]
    _assert_sent_upstream(tap, max_tokens=8)
    _assert_reported(answer.body["usage"], tap.usages[0])
    await _assert_billed(organization.pk, before, answer, answer.body["usage"], tap)
    record = await record_of(answer.request_id)
    assert not record.is_stream


async def test_a_stream_carries_llamacpps_usage_and_is_billed_for_it(async_client, live_key, tap):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 200
    events, done = answer.body
    assert done
    assert streamed_text(events)
    assert events[-1]["choices"] == []
    assert all(event["usage"] is None for event in events[:-1])
    _assert_sent_upstream(tap, max_tokens=8)
    _assert_reported(events[-1]["usage"], tap.usages[0])
    await _assert_billed(organization.pk, before, answer, events[-1]["usage"], tap)


async def test_a_call_with_tools_sends_them_and_is_billed_for_llamacpps_usage(
    async_client, live_key, tap
):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "max_tokens": 24,
        "temperature": 0,
    }
    answer = await call(async_client, raw_key, "/chat/completions", body)
    assert answer.status == 200, answer.body
    sent = _assert_sent_upstream(tap, max_tokens=24)
    assert (sent["tools"], sent["tool_choice"]) == ([WEATHER_TOOL], "auto")
    usage = answer.body["usage"]
    _assert_reported(usage, tap.usages[0])
    # The tool definitions reached the prompt: it is longer than the question alone.
    assert usage["prompt_tokens"] > 60
    await _assert_billed(organization.pk, before, answer, usage, tap)


async def test_a_completion_is_billed_for_llamacpps_usage(async_client, live_key, tap):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0}
    answer = await call(async_client, raw_key, "/completions", body)
    assert answer.status == 200, answer.body
    validate_response("post", "/completions", 200, answer.body)
    assert answer.body["object"] == "text_completion"
    assert answer.body["choices"][0]["text"]
    sent = _assert_sent_upstream(tap, max_tokens=6)
    assert sent["prompt"] == "Once upon a time"
    _assert_reported(answer.body["usage"], tap.usages[0])
    await _assert_billed(organization.pk, before, answer, answer.body["usage"], tap)


async def test_embeddings_are_llamacpps_vectors_billed_for_its_usage(
    async_client, live_key, llamacpp_embedder, operator_catalog, vendor_env
):
    organization, raw_key = live_key
    vendor_env.setenv(KEY_ENV, llamacpp_embedder.api_key)
    routes = [route(llamacpp_embedder.base_url, model=LLAMACPP_MODEL, api_key_env=KEY_ENV)]
    operator_catalog([upstream_model("team-embed", routes, kind="embedding")])
    inputs = ["The sea is blue.", "Bonjour à tous"]
    async with httpx.AsyncClient(timeout=60) as client:
        direct = (
            await client.post(
                llamacpp_embedder.base_url + "/embeddings",
                json={"model": LLAMACPP_MODEL, "input": inputs},
                headers={"Authorization": f"Bearer {llamacpp_embedder.api_key}"},
            )
        ).json()
    before = await books(organization.pk)
    body = {"model": "team-embed", "input": inputs}
    answer = await call(async_client, raw_key, "/embeddings", body)
    assert answer.status == 200, answer.body
    validate_response("post", "/embeddings", 200, answer.body)
    vectors = [item["embedding"] for item in answer.body["data"]]
    expected = [item["embedding"] for item in direct["data"]]
    assert len(vectors) == 2 and len(vectors[0]) == len(expected[0]) > 0
    assert np.allclose(vectors, expected, atol=1e-5)  # llama.cpp's own vectors, in order
    prompt_tokens = direct["usage"]["prompt_tokens"]
    assert answer.body["usage"]["prompt_tokens"] == prompt_tokens > 0
    cost = call_cost_micros(
        entry=catalog_entry("team-embed"), prompt_tokens=prompt_tokens, completion_tokens=0
    )
    record = await assert_charged(organization.pk, before, answer, cost_micros=cost)
    assert (record.provider, record.prompt_tokens) == ("openai", prompt_tokens)
