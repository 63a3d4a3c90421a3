"""The official openai SDK against a live server (Daphne, its own process) whose operator
catalog routes a model to the loopback OpenAI fake: a chat, a stream and a streamed tool call
come back as the SDK parses them, with the fake's usage."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai_api import FakeOpenAI, Stream, openai_usage
from tests.fakes.server import serve
from tests.gateway.upstream.conftest import (
    FAKE_KEY,
    FAKE_KEY_ENV,
    HELLO,
    VENDOR_ENV_NAMES,
    route,
    upstream_model,
)
from tests.live import run_server

pytestmark = pytest.mark.xdist_group("live")

MODEL = "team-gpt"
WEATHER = ("get_weather", ('{"city"', ': "Paris"}'))


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    upstream = FakeOpenAI(api_key=FAKE_KEY)
    with serve(upstream) as base_url:
        yield upstream, base_url + "/v1"


@pytest.fixture(scope="module")
def server_url(fake, tmp_path_factory, django_db_setup, django_db_blocker) -> Iterator[str]:
    """A live server whose only upstream is the operator's route to the fake."""
    _, base_url = fake
    catalog = tmp_path_factory.mktemp("sdk-catalog") / "catalog.json"
    catalog.write_text(json.dumps({"models": [upstream_model(MODEL, [route(base_url)])]}))
    env = {name: "" for name in VENDOR_ENV_NAMES}  # nothing configured from this machine
    env |= {"PLUGSKY_CATALOG_FILE": str(catalog), FAKE_KEY_ENV: FAKE_KEY}
    yield from run_server(env)


@pytest.fixture
def client(server_url, live_key, fake) -> openai.OpenAI:
    upstream, _ = fake
    upstream.received.clear()
    _, raw_key = live_key
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key=raw_key, max_retries=0)


def test_chat_completions_create(client, fake):
    upstream, _ = fake
    upstream.reply = Stream(texts=("Hello", " there!"), usage=openai_usage(prompt=19, completion=3))
    completion = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=10)
    assert completion.model == MODEL
    assert completion.choices[0].message.content == "Hello there!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (19, 3)
    (sent,) = upstream.received
    assert (sent.body["model"], sent.body["max_tokens"]) == ("gpt-4o-mini", 10)


def test_a_stream_with_usage(client, fake):
    upstream, _ = fake
    upstream.reply = Stream(texts=("Hel", "lo"), usage=openai_usage(prompt=19, completion=2))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (19, 2)


def test_a_streamed_tool_call_through_the_sdks_stream_helper(client, fake):
    upstream, _ = fake
    upstream.reply = Stream(texts=(), tool_call=WEATHER, finish_reason="tool_calls")
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip
    with client.chat.completions.stream(
        model=MODEL, messages=HELLO, max_tokens=20, tools=[tool]
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    assert final.choices[0].finish_reason == "tool_calls"
    assert upstream.received[0].body["tools"] == [tool]
