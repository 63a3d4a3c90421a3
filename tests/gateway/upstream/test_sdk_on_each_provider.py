"""The official openai SDK (and Anthropic's, on /v1/messages) against a live server (Daphne,
its own process) configured by the vendors' own variables (ANTHROPIC_API_KEY +
ANTHROPIC_BASE_URL, GEMINI_API_KEY + GEMINI_BASE_URL) pointing at the loopback fakes: on each
provider a chat, a stream with usage and a tool call come back as the SDK parses them, and each
is recorded and billed exactly."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletion

from apps.billing.pricing import call_cost_micros
from tests.fakes.anthropic_api import FakeAnthropic, Reply, ToolUse
from tests.fakes.gemini_api import API_KEY as GEMINI_KEY
from tests.fakes.gemini_api import MODEL_VERSION, GeminiFake, Stream, candidate, response
from tests.fakes.gemini_api import usage_metadata as gemini_usage
from tests.fakes.server import serve
from tests.gateway.upstream.conftest import (
    HELLO,
    VENDOR_ENV_NAMES,
    Answer,
    Books,
    assert_charged,
    books,
    catalog_entry,
)
from tests.live import run_server

pytestmark = pytest.mark.xdist_group("live")

CLAUDE = "claude-haiku-4-5"
GEMINI = "gemini-2.5-flash"
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip
ARGUMENTS = '{"city": "Paris"}'


@dataclass(frozen=True)
class Fakes:
    anthropic: FakeAnthropic
    gemini: GeminiFake
    env: dict[str, str]  # the vendors' variables that point at them


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    anthropic, gemini = FakeAnthropic(), GeminiFake(model=GEMINI)
    with serve(anthropic) as anthropic_url, serve(gemini) as gemini_url:
        env = {
            "ANTHROPIC_API_KEY": anthropic.api_key,
            "ANTHROPIC_BASE_URL": anthropic_url,
            "GEMINI_API_KEY": GEMINI_KEY,
            "GEMINI_BASE_URL": gemini_url,
        }
        yield Fakes(anthropic, gemini, env)


@pytest.fixture(scope="module")
def server_url(fakes, django_db_setup, django_db_blocker) -> Iterator[str]:
    """A live server whose only upstreams are the two vendors, configured as their SDKs are."""
    env = {name: "" for name in VENDOR_ENV_NAMES}  # nothing configured from this machine
    yield from run_server(env | fakes.env)


@pytest.fixture
def upstreams(fakes, vendor_env) -> Fakes:
    """The fakes, cleared; the same variables in this process, so its catalog prices alike."""
    for name, value in fakes.env.items():
        vendor_env.setenv(name, value)
    fakes.anthropic.requests.clear()
    fakes.gemini.received.clear()
    return fakes


@pytest.fixture
async def client(server_url, live_key) -> AsyncIterator[openai.AsyncOpenAI]:
    _, raw_key = live_key
    async with openai.AsyncOpenAI(
        base_url=f"{server_url}/v1", api_key=raw_key, max_retries=0, timeout=60
    ) as sdk:
        yield sdk


# --- Scripting each vendor's answer --------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What the gateway must report and record for a scripted answer."""

    prompt_tokens: int
    completion_tokens: int
    provider: str
    upstream_names: tuple[str, str]  # the UsageRecord's (upstream_model, upstream_request_id)


def _script_text(fakes: Fakes, model: str) -> Expected:
    if model == CLAUDE:
        fakes.anthropic.reply = Reply(text="Hello there.", input_tokens=14, output_tokens=4)
        return Expected(14, 4, "anthropic", ("claude-fake-1", "req_01Fake"))
    fakes.gemini.script(
        Stream(
            [
                response(candidate(text="Hello")),
                response(
                    candidate(text=" there.", finish="STOP"),
                    usage=gemini_usage(prompt=9, candidates=3),
                ),
            ]
        )
    )
    return Expected(9, 3, "gemini", (MODEL_VERSION, "resp-gemini-1"))


def _script_tool_call(fakes: Fakes, model: str) -> Expected:
    if model == CLAUDE:
        call = ToolUse(id="toolu_01FakeWeather", name="get_weather", arguments=ARGUMENTS)
        fakes.anthropic.reply = Reply(
            tool_uses=[call], stop_reason="tool_use", input_tokens=61, output_tokens=17
        )
        return Expected(61, 17, "anthropic", ("claude-fake-1", "req_01Fake"))
    calls = (("get_weather", {"city": "Paris"}),)
    answer = response(
        candidate(calls=calls, finish="STOP"), usage=gemini_usage(prompt=40, candidates=8)
    )
    fakes.gemini.script(Stream([answer]))
    return Expected(40, 8, "gemini", (MODEL_VERSION, "resp-gemini-1"))


def _sent(fakes: Fakes, model: str) -> list[Any]:
    """The bodies the model's vendor received in this test."""
    if model == CLAUDE:
        return list(fakes.anthropic.requests)
    return [received.body for received in fakes.gemini.received]


# --- The ledger ------------------------------------------------------------------------------


async def _assert_billed(
    organization_id: int, before: Books, request_id: str, *, model: str, expected: Expected
) -> None:
    cost = call_cost_micros(
        entry=catalog_entry(model),
        prompt_tokens=expected.prompt_tokens,
        completion_tokens=expected.completion_tokens,
    )
    assert cost > 0
    answer = Answer(status=200, headers={"x-request-id": request_id}, body=None)
    record = await assert_charged(organization_id, before, answer, cost_micros=cost)
    assert (record.model, record.provider, record.route_index, record.status) == (
        model,
        expected.provider,
        0,
        200,
    )
    assert (record.prompt_tokens, record.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert (record.upstream_model, record.upstream_request_id) == expected.upstream_names


def _assert_usage(usage: Any, expected: Expected) -> None:
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
        expected.prompt_tokens + expected.completion_tokens,
    )


# --- The calls -------------------------------------------------------------------------------

each_provider = pytest.mark.parametrize("model", [CLAUDE, GEMINI])


@each_provider
async def test_chat_completions_create(client, live_key, upstreams, model):
    organization, _ = live_key
    expected = _script_text(upstreams, model)
    before = await books(organization.pk)
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=HELLO, max_tokens=16
    )
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    assert completion.model == model
    (choice,) = completion.choices
    assert (choice.message.role, choice.message.content) == ("assistant", "Hello there.")
    assert (choice.finish_reason, choice.message.tool_calls) == ("stop", None)
    _assert_usage(completion.usage, expected)
    assert len(_sent(upstreams, model)) == 1
    await _assert_billed(
        organization.pk, before, raw.headers["x-request-id"], model=model, expected=expected
    )


@each_provider
async def test_a_stream_with_usage(client, live_key, upstreams, model):
    organization, _ = live_key
    expected = _script_text(upstreams, model)
    before = await books(organization.pk)
    raw = await client.chat.completions.with_raw_response.create(
        model=model,
        messages=HELLO,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in raw.parse()]
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk.model for chunk in chunks} == {model}
    with_choices = [chunk.choices[0] for chunk in chunks if chunk.choices]
    assert "".join(choice.delta.content or "" for choice in with_choices) == "Hello there."
    finishes = [choice.finish_reason for choice in with_choices if choice.finish_reason]
    assert finishes == ["stop"]
    # The usage chunk is the last, with no choices; every other chunk has none.
    assert chunks[-1].choices == []
    assert [chunk.usage for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)
    _assert_usage(chunks[-1].usage, expected)
    await _assert_billed(
        organization.pk, before, raw.headers["x-request-id"], model=model, expected=expected
    )


@each_provider
async def test_a_tool_call(client, live_key, upstreams, model):
    organization, _ = live_key
    expected = _script_tool_call(upstreams, model)
    before = await books(organization.pk)
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=HELLO, max_tokens=40, tools=[TOOL]
    )
    completion = raw.parse()
    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    (tool_call,) = choice.message.tool_calls or []
    assert tool_call.type == "function"
    assert tool_call.id.startswith("call_" if model == GEMINI else "toolu_01FakeWeather")
    assert (tool_call.function.name, json.loads(tool_call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )
    _assert_usage(completion.usage, expected)
    (sent,) = _sent(upstreams, model)
    assert _declared_tool_names(sent, model) == ["get_weather"]
    await _assert_billed(
        organization.pk, before, raw.headers["x-request-id"], model=model, expected=expected
    )


def _declared_tool_names(body: dict[str, Any], model: str) -> list[str]:
    """The tools the vendor was offered, read from its own request shape."""
    if model == CLAUDE:
        return [tool["name"] for tool in body["tools"]]
    return [tool["name"] for group in body["tools"] for tool in group["functionDeclarations"]]


# --- Anthropic's own SDK on /v1/messages, on each upstream -----------------------------------


@pytest.fixture
async def anthropic_client(server_url, live_key) -> AsyncIterator[anthropic.AsyncAnthropic]:
    _, raw_key = live_key
    async with anthropic.AsyncAnthropic(
        base_url=server_url, api_key=raw_key, max_retries=0, timeout=60
    ) as sdk:
        yield sdk


@each_provider
async def test_anthropics_sdk_on_an_upstream_model(anthropic_client, live_key, upstreams, model):
    organization, _ = live_key
    expected = _script_text(upstreams, model)
    before = await books(organization.pk)
    raw = await anthropic_client.messages.with_raw_response.create(
        model=model, max_tokens=16, messages=HELLO
    )
    message = await raw.parse()
    assert message.model == model and message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello there."  # type: ignore[union-attr]
    total_input = message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)
    assert (total_input, message.usage.output_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    await _assert_billed(
        organization.pk, before, raw.headers["x-request-id"], model=model, expected=expected
    )


@each_provider
async def test_anthropics_sdk_streams_a_tool_use_from_an_upstream_model(
    anthropic_client, live_key, upstreams, model
):
    _script_tool_call(upstreams, model)
    tool = {"name": "get_weather", "input_schema": TOOL["function"]["parameters"]}  # type: ignore[index]
    async with anthropic_client.messages.stream(
        model=model, max_tokens=60, messages=HELLO, tools=[tool]
    ) as stream:
        final = await stream.get_final_message()
    (call,) = [block for block in final.content if block.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", json.loads(ARGUMENTS))
    assert final.stop_reason == "tool_use"
