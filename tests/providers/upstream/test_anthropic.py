"""The Anthropic provider: its two mappings on hand-written bodies and events (shapes from
Anthropic's Messages reference), and its transport against a loopback fake of the API."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from apps.catalog.entries import CatalogEntry, Kind, UpstreamRoute
from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from apps.providers.base import Chunk, Usage
from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.anthropic import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    TOOL_PROMPT_TOKENS,
    AnthropicProvider,
    StreamTranslation,
    messages_body,
)
from apps.providers.upstream.tokens import count_tokens
from tests.fakes.anthropic_api import (
    BadRequest,
    FakeAnthropic,
    Reply,
    ToolUse,
    check_body,
    stream_events,
)
from tests.fakes.server import serve

API_KEY = "sk-ant-test-key"
ROUTE = UpstreamRoute(provider="anthropic", model="claude-sonnet-9", api_key_env="ANTHROPIC_KEY")
ENTRY = CatalogEntry(
    id="claude-test", kind=Kind.CHAT, routes=(ROUTE,), context_length=200_000, description="t"
)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def chat(messages: list[dict[str, Any]] | None = None, **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "claude-test", "messages": messages or [{"role": "user", "content": "Hi"}]}
        | fields
    )


def body_of(request: ChatCompletionRequest, max_tokens: int = 100) -> dict[str, Any]:
    return messages_body(request, model="claude-sonnet-9", max_tokens=max_tokens)


def provider(base_url: str, api_key: str = API_KEY) -> AnthropicProvider:
    return AnthropicProvider(ENTRY, ROUTE, base_url=base_url, api_key=api_key)


async def collect(
    base_url: str, request: ChatCompletionRequest, usage: Usage | None = None
) -> list[Chunk]:
    stream = provider(base_url).chat(request, max_tokens=64, usage=usage or Usage())
    return [chunk async for chunk in stream]


def deltas(chunks: list[Chunk]) -> list[dict[str, Any]]:
    return [chunk["choices"][0]["delta"] for chunk in chunks]


def text_of(chunks: list[Chunk]) -> str:
    return "".join(delta.get("content") or "" for delta in deltas(chunks))


def finishes(chunks: list[Chunk]) -> list[str]:
    reasons = [chunk["choices"][0]["finish_reason"] for chunk in chunks]
    return [reason for reason in reasons if reason is not None]


def calls_of(chunks: list[Chunk]) -> dict[int, dict[str, str]]:
    """tool_calls[].index -> the call's id, name and concatenated arguments."""
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas(chunks):
        for call in delta.get("tool_calls") or []:
            known = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
            known["id"] = call.get("id") or known["id"]
            known["name"] = call.get("function", {}).get("name") or known["name"]
            known["arguments"] += call.get("function", {}).get("arguments") or ""
    return calls


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    api = FakeAnthropic(api_key=API_KEY, request_id="req_01Test")
    with serve(api) as base_url:
        api.base_url = base_url
        yield api


# --- OpenAI request -> Messages body ----------------------------------------------------------


def test_body_has_system_turns_max_tokens_and_streams():
    request = chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Hello"},
        ]
    )

    assert body_of(request, max_tokens=321) == {
        "model": "claude-sonnet-9",
        "max_tokens": 321,
        "stream": True,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }


def test_body_merges_consecutive_turns_of_one_role_and_drops_empty_text():
    request = chat(
        [
            {"role": "user", "content": "One"},
            {"role": "user", "content": [{"type": "text", "text": "Two"}]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Three"},
        ]
    )

    assert body_of(request)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "One"},
                {"type": "text", "text": "Two"},
                {"type": "text", "text": "Three"},
            ],
        }
    ]


def test_body_turns_tool_calls_into_tool_use_and_tool_messages_into_one_result_turn():
    request = chat(
        [
            {"role": "user", "content": "Weather and time in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {"id": "toolu_2", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "14:00"}],
            },
            {"role": "user", "content": "Thanks"},
        ],
        tools=[WEATHER, TIME],
    )

    assert body_of(request)["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "14:00"}],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_body_puts_tool_results_ahead_of_text_in_their_turn():
    request = chat(
        [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "t1", "function": TIME["function"] | {"arguments": "{}"}}],
            },
            {"role": "user", "content": "(note)"},
            {"role": "tool", "tool_call_id": "t1", "content": "noon"},
        ],
        tools=[TIME],
    )

    assert [block["type"] for block in body_of(request)["messages"][2]["content"]] == [
        "tool_result",
        "text",
    ]


def test_body_maps_image_urls_to_base64_and_url_sources():
    request = chat(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            }
        ]
    )

    assert body_of(request)["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]


@pytest.mark.parametrize(
    "url", ["data:image/bmp;base64,Qk0=", "ftp://example.com/a.png", "data:image/png,raw"]
)
def test_body_refuses_images_anthropic_cannot_take(url: str):
    request = chat(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    )

    with pytest.raises(ProviderError) as failure:
        body_of(request)

    assert (failure.value.status, failure.value.code, failure.value.param) == (
        400,
        "invalid_value",
        "messages[0].content[0].image_url.url",
    )


def test_body_keeps_cache_control_markers():
    part = {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}
    request = chat([{"role": "user", "content": [part]}])

    assert body_of(request)["messages"][0]["content"] == [
        {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}
    ]


def test_body_maps_sampling_stop_and_user_and_ignores_seed():
    request = chat(temperature=0.3, top_p=0.9, stop=["END", ""], user="user-42", seed=7)

    body = body_of(request)

    assert {key: body[key] for key in ("temperature", "top_p", "stop_sequences", "metadata")} == {
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
    }
    assert "seed" not in body


def test_body_carries_top_k_as_sent():
    assert body_of(chat(top_k=5))["top_k"] == 5
    assert body_of(chat(top_k=0))["top_k"] == 0
    assert "top_k" not in body_of(chat())


def test_body_clamps_temperature_to_anthropics_range():
    assert body_of(chat(temperature=1.7))["temperature"] == 1.0
    assert body_of(chat(temperature=1.0))["temperature"] == 1.0


def test_body_maps_tools():
    assert body_of(chat(tools=[WEATHER, TIME]))["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "Weather of a city",
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body_of(chat(tools=[WEATHER]))


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            None,
            {"type": "tool", "name": "get_time"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_body_maps_tool_choice(tool_choice: Any, parallel: bool | None, expected: dict[str, Any]):
    fields: dict[str, Any] = {"tools": [WEATHER, TIME]}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel

    assert body_of(chat(**fields))["tool_choice"] == expected


def test_body_turns_a_json_schema_into_a_forced_answer_tool():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = chat(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "count", "description": "A count", "schema": schema},
        }
    )

    body = body_of(request)

    assert body["tools"] == [
        {"name": "json_response", "description": "A count", "input_schema": schema}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}


def test_body_json_object_takes_any_object_and_leaves_client_tools_callable():
    body = body_of(chat(response_format={"type": "json_object"}, tools=[WEATHER]))

    assert [tool["name"] for tool in body["tools"]] == ["get_weather", "json_response"]
    assert body["tools"][1]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    "fields",
    [
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "array"}},
            }
        },
        {
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "json_response"}}],
        },
    ],
)
def test_body_refuses_response_formats_it_cannot_express(fields: dict[str, Any]):
    with pytest.raises(ProviderError) as failure:
        body_of(chat(**fields))

    assert (failure.value.status, failure.value.param) == (400, "response_format")


def test_body_json_schema_without_a_schema_takes_any_object():
    body = body_of(chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}))

    assert body["tools"][0]["input_schema"] == {"type": "object"}


def test_body_text_response_format_changes_nothing():
    assert body_of(chat(response_format={"type": "text"})) == body_of(chat())


UNSUPPORTED = [
    ("n", 2),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("logit_bias", {"42": 5}),
    ("presence_penalty", 0.5),
    ("frequency_penalty", -1.0),
]


@pytest.mark.parametrize(("param", "value"), UNSUPPORTED)
def test_body_refuses_parameters_anthropic_lacks(param: str, value: Any):
    with pytest.raises(ProviderError) as failure:
        body_of(chat(**{param: value}))

    assert (failure.value.status, failure.value.code, failure.value.param) == (
        400,
        "unsupported_parameter",
        param,
    )
    assert failure.value.retryable is False


def test_body_accepts_the_neutral_values_of_those_parameters():
    body = body_of(
        chat(
            n=1,
            logprobs=False,
            top_logprobs=0,
            logit_bias={},
            presence_penalty=0,
            frequency_penalty=0,
        )
    )

    assert set(body) == {"model", "max_tokens", "messages", "stream"}


def test_body_refuses_a_conversation_not_starting_with_the_user():
    request = chat([{"role": "system", "content": "S"}, {"role": "assistant", "content": "Hi"}])

    with pytest.raises(ProviderError) as failure:
        body_of(request)

    assert (failure.value.status, failure.value.param) == (400, "messages")


def test_body_refuses_tool_call_arguments_that_are_not_an_object():
    request = chat(
        [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "t", "function": {"name": "get_time", "arguments": "[1]"}}],
            },
        ]
    )

    with pytest.raises(ProviderError) as failure:
        body_of(request)

    assert failure.value.param == "messages[1].tool_calls[0].function.arguments"


# --- Messages stream events -> chunks and usage -----------------------------------------------


def message_start(**usage: int) -> dict[str, Any]:
    counts = {"input_tokens": 25, "output_tokens": 1} | usage
    message = {"id": "msg_01XYZ", "type": "message", "role": "assistant", "content": []}
    return {
        "type": "message_start",
        "message": message | {"model": "claude-sonnet-9-20260101", "usage": counts},
    }


def text_block(index: int) -> dict[str, Any]:
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "text", "text": ""},
    }


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def tool_block(index: int, call_id: str, name: str) -> dict[str, Any]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    return {"type": "content_block_start", "index": index, "content_block": block}


def json_delta(index: int, partial: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str | None, output_tokens: int) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


STOP = {"type": "message_stop"}
PING = {"type": "ping"}


def translate(
    events: list[dict[str, Any]], usage: Usage | None = None, *, answers_as_tool: bool = False
) -> list[Chunk]:
    translation = StreamTranslation(usage=usage or Usage(), answers_as_tool=answers_as_tool)
    return [chunk for event in events for chunk in translation.translate(event)]


def test_stream_of_text():
    usage = Usage()
    events = [
        message_start(),
        PING,
        text_block(0),
        text_delta(0, "Hello"),
        text_delta(0, " there"),
        block_stop(0),
        message_delta("end_turn", 7),
        STOP,
    ]

    chunks = translate(events, usage)

    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": " there"},
        {},
    ]
    assert finishes(chunks) == ["stop"]
    assert chunks[-1]["choices"][0]["index"] == 0
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.exact) == (
        25,
        7,
        0,
        True,
    )
    assert (usage.upstream_model, usage.upstream_request_id) == (
        "claude-sonnet-9-20260101",
        "msg_01XYZ",
    )


def test_stream_of_text_then_two_parallel_tool_calls_indexes_them_0_and_1():
    events = [
        message_start(),
        text_block(0),
        text_delta(0, "Checking."),
        block_stop(0),
        tool_block(1, "toolu_A", "get_weather"),
        json_delta(1, ""),
        json_delta(1, '{"city": '),
        json_delta(1, '"Paris"}'),
        block_stop(1),
        tool_block(2, "toolu_B", "get_time"),
        json_delta(2, "{}"),
        block_stop(2),
        message_delta("tool_use", 40),
        STOP,
    ]

    chunks = translate(events)

    assert calls_of(chunks) == {
        0: {"id": "toolu_A", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "toolu_B", "name": "get_time", "arguments": "{}"},
    }
    assert deltas(chunks)[2] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "toolu_A",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    assert finishes(chunks) == ["tool_calls"]


def test_stream_opening_with_a_tool_call_has_role_and_null_content():
    chunks = translate([message_start(), tool_block(0, "toolu_A", "get_time")])

    assert deltas(chunks) == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_A",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ],
        }
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stream_maps_stop_reasons(stop_reason: str, finish_reason: str):
    events = [message_start(), tool_block(0, "t", "get_time"), block_stop(0)]
    chunks = translate([*events, message_delta(stop_reason, 3), STOP])

    assert finishes(chunks) == [finish_reason]


def test_stream_names_the_stop_sequence_that_matched():
    delta = {"type": "message_delta", "delta": {"stop_reason": "stop_sequence",
             "stop_sequence": "END"}, "usage": {"output_tokens": 3}}  # fmt: skip
    chunks = translate([message_start(), delta, STOP])

    assert finishes(chunks) == ["stop"]
    assert chunks[-1]["choices"][0]["stop_reason"] == "END"


def test_stream_sends_one_finish_reason_when_message_delta_repeats():
    usage = Usage()
    events = [message_start(), message_delta("end_turn", 2), message_delta("end_turn", 3), STOP]

    chunks = translate(events, usage)

    assert finishes(chunks) == ["stop"]
    assert deltas(chunks) == [{"role": "assistant", "content": ""}]  # an empty answer
    assert usage.completion_tokens == 3


def test_stream_usage_counts_cache_reads_and_writes_in_the_prompt():
    usage = Usage()
    start = message_start(
        input_tokens=10, cache_read_input_tokens=100, cache_creation_input_tokens=50
    )

    translate([start, message_delta("end_turn", 4), STOP], usage)

    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (160, 100, 4)
    assert usage.extra == {"cache_creation_input_tokens": 50}


def test_stream_usage_takes_cumulative_input_counts_from_message_delta():
    usage = Usage()
    final = message_delta("end_turn", 9)
    final["usage"] |= {"input_tokens": 30, "cache_read_input_tokens": 5}

    translate([message_start(input_tokens=30), final, STOP], usage)

    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (35, 5, 9)


def test_stream_counts_the_text_until_anthropic_counts_the_output():
    usage = Usage()
    pieces = ["The quick brown", " fox jumps", " over the lazy dog."]

    translate([message_start(), text_block(0), *[text_delta(0, p) for p in pieces]], usage)

    expected = sum(count_tokens(piece, family="anthropic") for piece in pieces)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (25, expected, False)
    assert expected > 0


def test_stream_counts_tool_calls_too():
    usage = Usage()

    translate(
        [message_start(), tool_block(0, "t", "get_weather"), json_delta(0, '{"city": "Oslo"}')],
        usage,
    )

    expected = count_tokens("get_weather", family="anthropic") + count_tokens(
        '{"city": "Oslo"}', family="anthropic"
    )
    assert usage.completion_tokens == expected


def test_stream_of_the_answer_tool_is_content():
    events = [
        message_start(),
        tool_block(0, "toolu_J", "json_response"),
        json_delta(0, ""),
        json_delta(0, '{"n": '),
        json_delta(0, "3}"),
        block_stop(0),
        message_delta("tool_use", 6),
        STOP,
    ]

    chunks = translate(events, answers_as_tool=True)

    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": '{"n": '},
        {"content": "3}"},
        {},
    ]
    assert finishes(chunks) == ["stop"]


def test_stream_of_a_client_tool_named_like_the_answer_tool_is_a_tool_call():
    chunks = translate([message_start(), tool_block(0, "toolu_J", "json_response")])

    assert calls_of(chunks) == {0: {"id": "toolu_J", "name": "json_response", "arguments": ""}}


@pytest.mark.parametrize(
    ("kind", "status", "code", "retryable"),
    [
        ("overloaded_error", 502, "upstream_error", True),
        ("api_error", 502, "upstream_error", True),
        ("rate_limit_error", 503, "upstream_rate_limited", True),
        ("invalid_request_error", 502, "upstream_error", False),
    ],
)
def test_stream_error_event_raises(kind: str, status: int, code: str, retryable: bool):
    error = {"type": "error", "error": {"type": kind, "message": "Overloaded"}}

    with pytest.raises(ProviderError) as failure:
        translate([message_start(), error])

    assert (failure.value.status, failure.value.code, failure.value.retryable) == (
        status,
        code,
        retryable,
    )
    assert kind in failure.value.message


def test_stream_ignores_blocks_openai_chunks_cannot_carry():
    thinking = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": ""},
    }
    thought = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hm"},
    }

    assert translate([message_start(), thinking, thought, block_stop(0)]) == []


# --- Transport against the fake -----------------------------------------------------------------


async def test_chat_streams_text_from_the_api(fake: FakeAnthropic):
    fake.reply = Reply(text="Bonjour, le monde!", output_tokens=6, input_tokens=14)
    usage = Usage()

    chunks = await collect(fake.base_url, chat([{"role": "user", "content": "Salut"}]), usage)

    assert text_of(chunks) == "Bonjour, le monde!"
    assert deltas(chunks)[0] == {"role": "assistant", "content": ""}
    assert finishes(chunks) == ["stop"]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (14, 6, True)
    assert (usage.provider, usage.upstream_model, usage.upstream_request_id) == (
        "anthropic",
        "claude-fake-1",
        "req_01Test",
    )
    assert fake.requests == [
        {
            "model": "claude-sonnet-9",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Salut"}]}],
            "stream": True,
        }
    ]
    headers = fake.headers[0]
    assert (headers["x-api-key"], headers["anthropic-version"]) == (API_KEY, "2023-06-01")
    assert headers["content-type"] == "application/json"
    assert fake.disconnected.is_set() is False  # read to its end: the connection stays pooled


async def test_chat_streams_two_parallel_tool_calls(fake: FakeAnthropic):
    fake.reply = Reply(
        text="Checking both.",  # block 0: the calls are blocks 1 and 2 but tool_calls 0 and 1
        tool_uses=[
            ToolUse(id="toolu_01", name="get_weather", arguments='{"city": "Lyon"}'),
            ToolUse(id="toolu_02", name="get_time", arguments="{}"),
        ],
        stop_reason="tool_use",
    )

    chunks = await collect(fake.base_url, chat(tools=[WEATHER, TIME]))

    assert calls_of(chunks) == {
        0: {"id": "toolu_01", "name": "get_weather", "arguments": '{"city": "Lyon"}'},
        1: {"id": "toolu_02", "name": "get_time", "arguments": "{}"},
    }
    assert text_of(chunks) == "Checking both."
    assert finishes(chunks) == ["tool_calls"]


async def test_chat_sends_tool_results_the_api_accepts(fake: FakeAnthropic):
    fake.reply = Reply(text="Lyon: 21 C at noon.")
    request = chat(
        [
            {"role": "user", "content": "Weather and time in Lyon?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                    },
                    {"id": "toolu_02", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "21 C"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": "12:00"},
        ],
        tools=[WEATHER, TIME],
    )

    chunks = await collect(fake.base_url, request)

    assert text_of(chunks) == "Lyon: 21 C at noon."
    sent = fake.requests[0]["messages"]
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"]
    assert [block["tool_use_id"] for block in sent[2]["content"]] == ["toolu_01", "toolu_02"]


async def test_chat_sends_images_the_api_accepts(fake: FakeAnthropic):
    fake.reply = Reply(text="Two images.")
    content = [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
    ]

    chunks = await collect(fake.base_url, chat([{"role": "user", "content": content}]))

    assert text_of(chunks) == "Two images."
    sources = [block["source"] for block in fake.requests[0]["messages"][0]["content"][1:]]
    assert sources == [
        {"type": "base64", "media_type": "image/png", "data": PNG},
        {"type": "url", "url": "https://example.com/cat.webp"},
    ]


async def test_chat_sends_stop_sequences_and_reports_a_stop(fake: FakeAnthropic):
    fake.reply = Reply(text="1, 2, 3", stop_reason="stop_sequence", stop_sequence="4")

    chunks = await collect(fake.base_url, chat(stop=["4", "four"]))

    assert fake.requests[0]["stop_sequences"] == ["4", "four"]
    assert finishes(chunks) == ["stop"]
    assert chunks[-1]["choices"][0]["stop_reason"] == "4"  # which one matched


async def test_chat_ending_naturally_names_no_stop_sequence(fake: FakeAnthropic):
    fake.reply = Reply(text="1, 2, 3", stop_reason="end_turn")

    chunks = await collect(fake.base_url, chat(stop=["4"]))

    assert finishes(chunks) == ["stop"]
    assert all("stop_reason" not in chunk["choices"][0] for chunk in chunks)


async def test_count_prompt_tokens_asks_anthropics_count_tokens(fake: FakeAnthropic):
    fake.reply = Reply(input_tokens=41)
    request = chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tools=[WEATHER],
        tool_choice="auto",
        temperature=0.2,
        top_k=3,
        stop=["x"],
        max_tokens=9,
    )

    assert await provider(fake.base_url).count_prompt_tokens(request) == 41

    (sent,) = fake.requests
    assert set(sent) == {"model", "system", "messages", "tools", "tool_choice"}
    assert sent["tool_choice"] == {"type": "auto"}
    assert fake.headers[0]["anthropic-version"] == "2023-06-01"


async def test_count_prompt_tokens_failing_is_the_apis_failure(fake: FakeAnthropic):
    fake.reply = Reply(fault="529")

    with pytest.raises(ProviderError) as failure:
        await provider(fake.base_url).count_prompt_tokens(chat())

    assert failure.value.retryable


async def test_chat_normalizes_cache_usage(fake: FakeAnthropic):
    fake.reply = Reply(
        text="Cached.",
        input_tokens=3,
        cache_read_input_tokens=2048,
        cache_creation_input_tokens=512,
        output_tokens=2,
    )
    usage = Usage()

    await collect(fake.base_url, chat(), usage)

    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (2563, 2048, 2)
    assert usage.extra == {"cache_creation_input_tokens": 512}


async def test_chat_answers_a_json_schema_as_content(fake: FakeAnthropic):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fake.reply = Reply(
        tool_uses=[ToolUse(id="toolu_J", name="json_response", arguments='{"n": 3}')],
        stop_reason="tool_use",
    )
    request = chat(
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    )

    chunks = await collect(fake.base_url, request)

    assert json.loads(text_of(chunks)) == {"n": 3}
    assert calls_of(chunks) == {}
    assert finishes(chunks) == ["stop"]


@pytest.mark.parametrize(("param", "value"), UNSUPPORTED)
async def test_chat_refuses_unsupported_parameters_before_calling(
    fake: FakeAnthropic, param: str, value: Any
):
    with pytest.raises(ProviderError) as failure:
        await collect(fake.base_url, chat(**{param: value}))

    assert (failure.value.status, failure.value.code, failure.value.param) == (
        400,
        "unsupported_parameter",
        param,
    )
    assert fake.headers == []  # nothing reached the API


async def test_chat_passes_back_the_apis_refusal_of_a_request(fake: FakeAnthropic):
    with pytest.raises(ProviderError) as failure:
        await collect(fake.base_url, chat(stop=[" "]))

    assert (failure.value.status, failure.value.code, failure.value.retryable) == (
        400,
        "invalid_request",
        False,
    )
    assert failure.value.message == "stop_sequences: each stop sequence must contain non-whitespace"


async def test_chat_with_a_wrong_key_is_a_failure_of_the_route(fake: FakeAnthropic):
    stream = provider(fake.base_url, api_key="sk-ant-wrong").chat(
        chat(), max_tokens=8, usage=Usage()
    )

    with pytest.raises(ProviderError) as failure:
        [chunk async for chunk in stream]

    assert (failure.value.status, failure.value.code, failure.value.retryable) == (
        502,
        "upstream_misconfigured",
        True,
    )


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        (Reply(fault="500"), 502, "upstream_error"),
        (Reply(fault="529"), 502, "upstream_error"),
        (Reply(text="Half of it", fault="cut"), 502, "upstream_unavailable"),
        (Reply(text="Half of it", fault="truncated"), 502, "upstream_malformed"),
        (Reply(text="Half of it", fault="malformed"), 502, "upstream_malformed"),
        (Reply(text="Half of it", fault="misshapen"), 502, "upstream_malformed"),
        (Reply(text="Half of it", fault="error_event"), 502, "upstream_error"),
    ],
)
async def test_chat_faults_are_retryable(fake: FakeAnthropic, reply: Reply, status: int, code: str):
    fake.reply = reply

    with pytest.raises(ProviderError) as failure:
        await collect(fake.base_url, chat())

    assert (failure.value.status, failure.value.code, failure.value.retryable) == (
        status,
        code,
        True,
    )


async def test_chat_rate_limited_is_retryable_with_the_apis_hint(fake: FakeAnthropic):
    fake.reply = Reply(fault="429", retry_after="7")

    with pytest.raises(ProviderError) as failure:
        await collect(fake.base_url, chat())

    assert (failure.value.status, failure.value.code, failure.value.retryable) == (
        503,
        "upstream_rate_limited",
        True,
    )
    assert failure.value.retry_after_s == 7.0


async def test_chat_cut_short_keeps_the_usage_of_what_ran(fake: FakeAnthropic):
    fake.reply = Reply(text="A long answer that never ends", input_tokens=40, fault="cut")
    usage = Usage()

    with pytest.raises(ProviderError):
        await collect(fake.base_url, chat(), usage)

    events = stream_events(fake.reply)
    sent = [
        data["delta"]["text"]
        for name, data in events[: len(events) // 2]
        if name == "content_block_delta"
    ]
    assert (usage.prompt_tokens, usage.exact) == (40, False)
    assert usage.completion_tokens == sum(count_tokens(text, family="anthropic") for text in sent)
    assert usage.completion_tokens > 0


async def test_chat_refused_connection_is_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there

    with pytest.raises(ProviderError) as failure:
        await collect(f"http://127.0.0.1:{port}", chat())

    assert (failure.value.status, failure.value.code, failure.value.retryable) == (
        502,
        "upstream_unavailable",
        True,
    )


async def test_chat_timeout_is_retryable(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(http, "READ_TIMEOUT_S", 0.2)
    fake.reply = Reply(text="late", fault="timeout", delay_s=1.0)

    with pytest.raises(ProviderError) as failure:
        await collect(fake.base_url, chat())

    assert (failure.value.status, failure.value.code, failure.value.retryable) == (
        504,
        "upstream_timeout",
        True,
    )


async def test_closing_the_stream_early_closes_the_connection(fake: FakeAnthropic):
    fake.reply = Reply(text="x" * 200, pieces=1, delay_s=0.02)
    stream = provider(fake.base_url).chat(chat(), max_tokens=8, usage=Usage())

    first = [await anext(stream), await anext(stream)]
    await stream.aclose()

    assert text_of(first) == "x"
    assert await asyncio.to_thread(fake.disconnected.wait, 5) is True
    assert fake.events_sent < len(stream_events(fake.reply))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def use(call_id: str) -> dict[str, Any]:
    block = {"type": "tool_use", "id": call_id, "name": "get_time", "input": {}}
    return {"role": "assistant", "content": [block]}


def result(call_id: str, *after: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "noon"}, *after],
    }


TOOLS = [{"name": "get_time", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        (
            {"messages": [{"role": "assistant", "content": "Hi"}]},
            "first message must use the user role",
        ),
        ({"messages": [user("a"), user("b")]}, "roles must alternate"),
        ({"messages": [user("a"), use("t1"), user("b")]}, "each tool_use must have a tool_result"),
        (
            {"messages": [user("a"), use("t1"), result("t2")]},
            "each tool_use must have a tool_result",
        ),
        (
            {
                "messages": [
                    user("a"),
                    use("t1"),
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "b"}, *result("t1")["content"]],
                    },
                ]
            },
            "tool_result blocks must come first",
        ),
        ({"temperature": 1.5}, "temperature"),
        ({"tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
    ],
)
def test_the_fake_refuses_what_the_api_refuses(fields: dict[str, Any], message: str):
    body = {"model": "m", "max_tokens": 8, "stream": True, "messages": [user("a")], "tools": TOOLS}

    with pytest.raises(BadRequest, match=message):
        check_body({key: value for key, value in (body | fields).items() if value is not None})


def test_the_fake_takes_a_tool_round_trip():
    messages = [user("a"), use("t1"), result("t1", {"type": "text", "text": "and?"})]

    check_body(
        {"model": "m", "max_tokens": 8, "stream": True, "messages": messages, "tools": TOOLS}
    )


# --- The rest of the interface ----------------------------------------------------------------


async def test_complete_and_embed_are_refused():
    anthropic = provider("http://127.0.0.1:9")

    with pytest.raises(ProviderError) as completing:
        [
            chunk
            async for chunk in anthropic.complete(
                CompletionRequest(model="m", prompt="x"), max_tokens=4, usage=Usage()
            )
        ]
    with pytest.raises(ProviderError) as embedding:
        await anthropic.embed(EmbeddingRequest(model="m", input="x"))

    assert (completing.value.status, completing.value.code) == (400, "unsupported_endpoint")
    assert (embedding.value.status, embedding.value.code) == (400, "unsupported_endpoint")


def test_prompt_token_bound_counts_bytes_images_and_tools():
    plain = chat([{"role": "system", "content": "Sé"}, {"role": "user", "content": "Hi"}])
    content = [
        {"type": "text", "text": "abc"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    with_image = chat([{"role": "user", "content": content}])
    with_tools = chat(tools=[TIME])
    anthropic = provider("http://127.0.0.1:9")

    assert (
        anthropic.prompt_token_bound(plain)
        == REQUEST_OVERHEAD_TOKENS + 2 * MESSAGE_OVERHEAD_TOKENS + 3 + 2
    )
    assert (
        anthropic.prompt_token_bound(with_image)
        == REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 3 + IMAGE_TOKENS
    )
    tools_json = json.dumps([{"type": "function", "function": {"name": "get_time"}}])
    assert anthropic.prompt_token_bound(with_tools) == (
        REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 2 + TOOL_PROMPT_TOKENS + len(tools_json)
    )


def test_prompt_token_bound_is_at_least_the_count_of_the_text():
    text = "Plugsky relaie cette requête vers Claude; 東京は晴れ。" * 20
    bound = provider("http://127.0.0.1:9").prompt_token_bound(
        chat([{"role": "user", "content": text}])
    )

    assert bound >= count_tokens(text, family="anthropic")


def test_is_available_needs_the_key_its_route_names():
    keyless = UpstreamRoute(provider="anthropic", model="claude-x")

    assert provider("https://api.anthropic.com").is_available() is True
    assert provider("https://api.anthropic.com", api_key="").is_available() is False
    assert (
        AnthropicProvider(ENTRY, keyless, base_url="http://proxy:8080", api_key="").is_available()
        is True
    )
