"""Anthropic's Messages API (/v1/messages) on upstream routes, at the loopback fakes: `top_k`
carried to each vendor, the matched stop sequence reported, and count_tokens answered by the
vendor's own counter (Anthropic, Gemini) or the gateway's estimate (an OpenAI-compatible
route), free of charge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, Reply
from tests.fakes.gemini_api import API_KEY as GEMINI_KEY
from tests.fakes.gemini_api import GeminiFake, tokens_counted
from tests.fakes.openai_api import FakeOpenAI
from tests.gateway.upstream.conftest import (
    Answer,
    books,
    call,
    record_of,
    route,
    served,
    upstream_model,
)

pytestmark = pytest.mark.xdist_group("live")

CLAUDE = "claude-haiku-4-5"
GEMINI = "gemini-2.5-flash"
TEAM_GPT = "team-gpt"
QUESTION = [{"role": "user", "content": "Count to ten."}]
STOPPED = Reply(text="1, 2, 3, 4, ", stop_reason="stop_sequence", stop_sequence="5")


@pytest.fixture
def anthropic(servers, vendor_env) -> FakeAnthropic:
    fake = FakeAnthropic()
    vendor_env.setenv("ANTHROPIC_API_KEY", fake.api_key)
    vendor_env.setenv("ANTHROPIC_BASE_URL", served(servers, fake))
    return fake


@pytest.fixture
def gemini(servers, vendor_env) -> GeminiFake:
    fake = GeminiFake(model=GEMINI)
    vendor_env.setenv("GEMINI_API_KEY", GEMINI_KEY)
    vendor_env.setenv("GEMINI_BASE_URL", served(servers, fake))
    return fake


@pytest.fixture
def team_gpt(servers, operator_catalog) -> FakeOpenAI:
    fake = FakeOpenAI(api_key="sk-test")
    operator_catalog([upstream_model(TEAM_GPT, [route(served(servers, fake) + "/v1")])])
    return fake


def _message(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 20, "messages": QUESTION, **fields}


async def _count(async_client: Any, raw_key: str, body: dict[str, Any]) -> Answer:
    return await call(async_client, raw_key, "/messages/count_tokens", body)


async def _stream(async_client: Any, raw_key: str, body: dict[str, Any]) -> list[Any]:
    """(event name, data) of a streamed Messages call, in Anthropic's framing."""
    response = await async_client.post(
        "/v1/messages",
        data=json.dumps(body),
        content_type="application/json",
        headers={"x-api-key": raw_key},
    )
    assert response.status_code == 200
    raw = b"".join([part async for part in response.streaming_content]).decode()
    events = []
    for block in raw.split("\n\n")[:-1]:
        name, data = block.split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


# --- top_k ----------------------------------------------------------------------------------


async def test_top_k_reaches_anthropic_as_its_own_field(async_client, live_key, anthropic):
    _, raw_key = live_key
    answer = await call(async_client, raw_key, "/messages", _message(CLAUDE, top_k=7))
    assert answer.status == 200, answer.body
    (sent,) = anthropic.requests
    assert sent["top_k"] == 7
    record = await record_of(answer.request_id)
    assert (record.endpoint, record.provider) == ("messages", "anthropic")


async def test_top_k_reaches_gemini_as_top_k_of_the_generation_config(
    async_client, live_key, gemini
):
    _, raw_key = live_key
    answer = await call(async_client, raw_key, "/messages", _message(GEMINI, top_k=3))
    assert answer.status == 200, answer.body
    (sent,) = gemini.received
    assert sent.body["generationConfig"]["topK"] == 3
    without = await call(async_client, raw_key, "/messages", _message(GEMINI))
    assert without.status == 200
    assert "topK" not in gemini.received[1].body["generationConfig"]


async def test_top_k_goes_to_an_openai_compatible_route_as_sent(async_client, live_key, team_gpt):
    # As every field such a route does not know: vLLM and llama.cpp's server apply it,
    # OpenAI itself answers its own 400 naming it.
    _, raw_key = live_key
    answer = await call(async_client, raw_key, "/messages", _message(TEAM_GPT, top_k=5))
    assert answer.status == 200, answer.body
    (sent,) = team_gpt.received
    assert sent.body["top_k"] == 5


async def test_a_top_k_that_is_not_a_count_is_refused_before_any_vendor_call(
    async_client, live_key, anthropic
):
    _, raw_key = live_key
    answer = await call(async_client, raw_key, "/messages", _message(CLAUDE, top_k=-1))
    assert answer.status == 400
    assert answer.body["type"] == "error"
    assert answer.body["error"]["type"] == "invalid_request_error"
    assert "top_k" in answer.body["error"]["message"]
    assert anthropic.requests == []


# --- stop_sequence --------------------------------------------------------------------------


async def test_the_stop_sequence_anthropic_matched_is_reported(async_client, live_key, anthropic):
    _, raw_key = live_key
    anthropic.reply = STOPPED
    body = _message(CLAUDE, stop_sequences=["zz", "5"])
    answer = await call(async_client, raw_key, "/messages", body)
    assert answer.status == 200, answer.body
    assert (answer.body["stop_reason"], answer.body["stop_sequence"]) == ("stop_sequence", "5")
    assert answer.body["content"] == [{"type": "text", "text": "1, 2, 3, 4, "}]
    assert anthropic.requests[0]["stop_sequences"] == ["zz", "5"]

    events = await _stream(async_client, raw_key, {**body, "stream": True})
    [delta] = [data for name, data in events if name == "message_delta"]
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "5"}


async def test_a_natural_end_on_anthropic_names_no_stop_sequence(async_client, live_key, anthropic):
    _, raw_key = live_key
    answer = await call(async_client, raw_key, "/messages", _message(CLAUDE, stop_sequences=["5"]))
    assert answer.status == 200, answer.body
    assert (answer.body["stop_reason"], answer.body["stop_sequence"]) == ("end_turn", None)


# --- count_tokens ---------------------------------------------------------------------------


async def test_count_tokens_on_claude_is_anthropics_count_and_costs_nothing(
    async_client, live_key, anthropic
):
    organization, raw_key = live_key
    anthropic.reply = Reply(text="Hi.", input_tokens=37)
    before = await books(organization.pk)
    body = {"model": CLAUDE, "system": "Be brief.", "messages": QUESTION}
    counted = await _count(async_client, raw_key, body)
    assert counted.status == 200, counted.body
    assert counted.body == {"input_tokens": 37}
    (sent,) = anthropic.requests
    assert sent == {
        "model": CLAUDE,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Count to ten."}]}],
    }
    assert anthropic.headers[0]["anthropic-version"] == "2023-06-01"
    assert await books(organization.pk) == before
    # The same prompt as a call: Anthropic's input usage is what was counted.
    created = await call(async_client, raw_key, "/messages", {**body, "max_tokens": 5})
    assert created.body["usage"]["input_tokens"] == 37


async def test_count_tokens_on_claude_passes_anthropics_refusal_on(
    async_client, live_key, anthropic
):
    _, raw_key = live_key
    # A tool_use without its tool_result in the next turn: Anthropic's own 400.
    body = {
        "model": CLAUDE,
        "messages": [
            *QUESTION,
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "count", "input": {}}]},
            {"role": "user", "content": "Go on."},
        ],
        "tools": [{"name": "count", "input_schema": {"type": "object"}}],
    }  # fmt: skip
    counted = await _count(async_client, raw_key, body)
    assert counted.status == 400
    assert counted.body["type"] == "error"
    assert counted.body["error"]["type"] == "invalid_request_error"
    assert "each tool_use must have a tool_result" in counted.body["error"]["message"]
    assert len(anthropic.requests) == 1  # the vendor's word, not the gateway's


async def test_count_tokens_with_anthropic_down_is_a_server_error_and_costs_nothing(
    async_client, live_key, anthropic
):
    organization, raw_key = live_key
    anthropic.reply = Reply(fault="529")
    before = await books(organization.pk)
    counted = await _count(async_client, raw_key, {"model": CLAUDE, "messages": QUESTION})
    assert counted.status in (502, 503), counted.body
    assert counted.body["type"] == "error"
    assert counted.body["error"]["type"] in ("api_error", "overloaded_error")
    assert await books(organization.pk) == before


async def test_count_tokens_on_gemini_is_its_count_tokens_answer(async_client, live_key, gemini):
    organization, raw_key = live_key
    before = await books(organization.pk)
    body = {"model": GEMINI, "system": "Be brief.", "messages": QUESTION}
    counted = await _count(async_client, raw_key, body)
    assert counted.status == 200, counted.body
    (sent,) = gemini.received
    assert sent.path == f"/v1beta/models/{GEMINI}:countTokens"
    inner = sent.body["generateContentRequest"]
    assert inner["model"] == f"models/{GEMINI}" and "generationConfig" not in inner
    assert counted.body == {"input_tokens": tokens_counted(sent.body)}
    assert counted.body["input_tokens"] == 3 + 2 + 3 + 3  # two contents: words + 3 each
    assert await books(organization.pk) == before


async def test_count_tokens_on_an_openai_compatible_route_is_the_gateways_estimate(
    async_client, live_key, team_gpt
):
    organization, raw_key = live_key
    before = await books(organization.pk)
    short = await _count(async_client, raw_key, {"model": TEAM_GPT, "messages": QUESTION})
    longer_question = [{"role": "user", "content": "Count to ten, then back to one, slowly."}]
    longer = await _count(async_client, raw_key, {"model": TEAM_GPT, "messages": longer_question})
    assert short.status == longer.status == 200, short.body
    assert 0 < short.body["input_tokens"] < longer.body["input_tokens"]
    assert team_gpt.received == []  # counted in the gateway: the server has no counter
    assert await books(organization.pk) == before


async def test_count_tokens_needs_a_valid_key(async_client, anthropic):
    answer = await call(
        async_client,
        "sk-live-wrong",
        "/messages/count_tokens",
        {"model": CLAUDE, "messages": QUESTION},
    )
    assert answer.status == 401
    assert answer.body["type"] == "error"
    assert answer.body["error"]["type"] == "authentication_error"
    assert anthropic.requests == []
