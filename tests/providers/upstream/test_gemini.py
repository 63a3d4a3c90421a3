"""The Gemini provider: its two mappings on recorded bodies, its transport against the fake."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import numpy as np
import pytest

from apps.catalog.entries import CatalogEntry, Kind, UpstreamRoute
from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from apps.providers.base import Usage
from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.gemini import (
    IMAGE_TOKEN_ALLOWANCE,
    GeminiProvider,
    StreamMapper,
    gemini_request,
    openapi_schema,
)
from apps.providers.upstream.tokens import count_tokens
from tests.fakes.gemini_api import (
    API_KEY,
    MODEL_VERSION,
    GeminiFake,
    Slow,
    Status,
    Stream,
    candidate,
    response,
    tokens_counted,
    usage_metadata,
)
from tests.fakes.server import serve

ROUTE = UpstreamRoute(provider="gemini", model="gemini-2.5-flash", api_key_env="GEMINI_API_KEY")
ENTRY = CatalogEntry(
    id="gemini-flash", kind=Kind.CHAT, routes=(ROUTE,), context_length=1_048_576, description=""
)
EMBED_ROUTE = UpstreamRoute(provider="gemini", model="gemini-embedding-001", api_key_env="K")
EMBED_ENTRY = CatalogEntry(
    id="gemini-embed",
    kind=Kind.EMBEDDING,
    routes=(EMBED_ROUTE,),
    context_length=2048,
    description="",
)
PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "A city"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "gemini-flash", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def provider(base_url: str, *, api_key: str = API_KEY) -> GeminiProvider:
    return GeminiProvider(ENTRY, ROUTE, base_url=base_url, api_key=api_key)


async def run(
    gemini: GeminiProvider, request: ChatCompletionRequest, *, max_tokens: int = 64
) -> tuple[list[dict[str, Any]], Usage]:
    usage = Usage()
    chunks = [chunk async for chunk in gemini.chat(request, max_tokens=max_tokens, usage=usage)]
    return chunks, usage


def choices(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [choice for chunk in chunks for choice in chunk["choices"]]


def text_of(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(c["delta"].get("content") or "" for c in choices(chunks) if c["index"] == index)


def finishes(chunks: list[dict[str, Any]]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for choice in choices(chunks):
        if choice["finish_reason"] is not None:
            found.setdefault(choice["index"], []).append(choice["finish_reason"])
    return found


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- Request mapping ----------------------------------------------------------------------


def test_request_maps_roles_system_and_generation_config() -> None:
    request = chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "Again"},
        ],
        temperature=0.5,
        top_p=0.9,
        n=2,
        stop=["END", ""],
        seed=42,
        presence_penalty=0.25,
        frequency_penalty=-0.5,
    )

    body = gemini_request(request, max_tokens=100)

    assert body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use French."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Salut"}]},
            {"role": "user", "parts": [{"text": "Again"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 100,
            "candidateCount": 2,
            "temperature": 0.5,
            "topP": 0.9,
            "presencePenalty": 0.25,
            "frequencyPenalty": -0.5,
            "seed": 42,
            "stopSequences": ["END"],
        },
    }


def test_top_k_is_top_k_of_the_generation_config_and_zero_means_none() -> None:
    assert gemini_request(chat(top_k=4), max_tokens=5)["generationConfig"]["topK"] == 4
    assert "topK" not in gemini_request(chat(top_k=0), max_tokens=5)["generationConfig"]
    assert "topK" not in gemini_request(chat(), max_tokens=5)["generationConfig"]


def test_an_int64_seed_is_folded_into_gemini_int32_range() -> None:
    body = gemini_request(chat(seed=2**40 + 7), max_tokens=5)

    assert body["generationConfig"]["seed"] == 7
    assert gemini_request(chat(seed=-1), max_tokens=5)["generationConfig"]["seed"] == 2**31 - 1


def test_images_go_inline_from_data_urls_and_as_file_data_from_http_urls() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/image"}},
    ]

    body = gemini_request(chat(messages=[{"role": "user", "content": content}]), max_tokens=5)

    assert body["contents"][0]["parts"] == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/image"}},
    ]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "data:image/png,rawbytes", "data:text/plain;base64,aGk="]
)
def test_an_unusable_image_url_is_a_400_naming_it(url: str) -> None:
    content = [{"type": "text", "text": "What?"}, {"type": "image_url", "image_url": {"url": url}}]

    with pytest.raises(ProviderError) as raised:
        gemini_request(chat(messages=[{"role": "user", "content": content}]), max_tokens=5)

    assert raised.value.status == 400
    assert raised.value.code == "invalid_value"
    assert raised.value.param == "messages[0].content[1].image_url.url"


def test_an_audio_part_is_a_400_naming_its_type() -> None:
    content = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]

    with pytest.raises(ProviderError) as raised:
        gemini_request(chat(messages=[{"role": "user", "content": content}]), max_tokens=5)

    assert (raised.value.status, raised.value.code) == (400, "unsupported_parameter")
    assert raised.value.param == "messages[0].content[0].type"


def tool_history() -> list[dict[str, Any]]:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "time", "arguments": '{"zone": "CET"}'},
        },
    ]
    return [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "user", "content": "Thanks"},
    ]


def test_tool_calls_and_results_become_function_parts() -> None:
    body = gemini_request(chat(messages=tool_history()), max_tokens=5)

    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "weather", "args": {}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {"functionCall": {"name": "time", "args": {"zone": "CET"}}},
            ],
        },
        {
            "role": "user",  # the answers to one turn's calls, and the next message, in one turn
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "time", "response": {"result": "12:00"}}},
                {"text": "Thanks"},
            ],
        },
    ]


def test_a_json_result_that_is_not_an_object_is_wrapped() -> None:
    history = tool_history()[:3]
    history[2]["content"] = "[1, 2]"

    body = gemini_request(chat(messages=history), max_tokens=5)

    answer = body["contents"][2]["parts"][0]["functionResponse"]
    assert answer == {"name": "weather", "response": {"result": [1, 2]}}


def test_a_tool_message_answering_no_call_is_a_400() -> None:
    history = tool_history()[:3]
    history[2]["tool_call_id"] = "call_unknown"

    with pytest.raises(ProviderError) as raised:
        gemini_request(chat(messages=history), max_tokens=5)

    assert (raised.value.status, raised.value.param) == (400, "messages[2].tool_call_id")


def test_call_arguments_that_are_not_an_object_are_a_400() -> None:
    history = tool_history()[:2]
    history[1]["tool_calls"][1]["function"]["arguments"] = '"Paris"'

    with pytest.raises(ProviderError) as raised:
        gemini_request(chat(messages=history), max_tokens=5)

    assert raised.value.param == "messages[1].tool_calls[1].function.arguments"


def test_tools_become_declarations_with_the_schema_gemini_accepts() -> None:
    no_arguments = {"type": "function", "function": {"name": "now", "parameters": {}}}

    body = gemini_request(chat(tools=[WEATHER, no_arguments]), max_tokens=5)

    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "weather",
                    "description": "The weather in a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING", "description": "A city"},
                            "unit": {"nullable": True, "type": "STRING", "enum": ["c", "f"]},
                        },
                        "required": ["city"],
                    },
                },
                {"name": "now"},
            ]
        }
    ]
    assert "toolConfig" not in body


def test_schema_pruning_keeps_properties_named_like_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "format": {"type": "integer", "minimum": 1, "exclusiveMinimum": 0},
            "tags": {"type": "array", "items": {"type": "string", "const": "x"}},
            "either": {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/x"}]},
        },
        "$defs": {"x": {"type": "string"}},
    }

    assert openapi_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "format": {"type": "INTEGER", "minimum": 1},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "either": {"anyOf": [{"type": "STRING"}, {}]},
        },
    }


@pytest.mark.parametrize(
    ("tool_choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["weather"]},
        ),
    ],
)
def test_tool_choice_becomes_a_function_calling_config(
    tool_choice: Any, config: dict[str, Any]
) -> None:
    body = gemini_request(chat(tools=[WEATHER], tool_choice=tool_choice), max_tokens=5)

    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_response_formats_ask_for_json() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    json_schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}

    as_object = gemini_request(chat(response_format={"type": "json_object"}), max_tokens=5)
    as_schema = gemini_request(chat(response_format=json_schema), max_tokens=5)
    as_text = gemini_request(chat(response_format={"type": "text"}), max_tokens=5)

    assert as_object["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in as_object["generationConfig"]
    assert as_schema["generationConfig"]["responseMimeType"] == "application/json"
    assert as_schema["generationConfig"]["responseJsonSchema"] == schema
    assert as_text["generationConfig"] == {"maxOutputTokens": 5, "candidateCount": 1}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
    ],
)
def test_parameters_gemini_lacks_are_a_400_naming_them(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ProviderError) as raised:
        gemini_request(chat(**fields), max_tokens=5)

    assert raised.value.status == 400
    assert raised.value.code == "unsupported_parameter"
    assert raised.value.param == param
    assert raised.value.retryable is False


# --- Response mapping ---------------------------------------------------------------------


def test_text_streams_as_content_deltas_with_exact_usage_at_the_end() -> None:
    usage = Usage()
    mapper = StreamMapper(n=1, usage=usage)

    first = mapper.chunks(response(candidate(text="Hello")))
    assert usage.completion_tokens == count_tokens("Hello", family="gemini")
    assert usage.exact is False
    last = mapper.chunks(
        response(
            candidate(text=" world", finish="STOP"),
            usage=usage_metadata(prompt=120, candidates=2, thoughts=30, cached=100),
        )
    )

    assert first == [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "Hello"},
                    "finish_reason": None,
                }
            ]
        }
    ]
    assert last == [
        {"choices": [{"index": 0, "delta": {"content": " world"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    assert (usage.prompt_tokens, usage.cached_tokens) == (120, 100)
    assert (usage.completion_tokens, usage.reasoning_tokens) == (32, 30)
    assert usage.exact is True
    assert (usage.upstream_model, usage.upstream_request_id) == (MODEL_VERSION, "resp-gemini-1")
    assert mapper.is_complete


def test_usage_metadata_before_the_end_is_not_exact_and_never_lowers_the_count() -> None:
    usage = Usage()
    mapper = StreamMapper(n=1, usage=usage)
    text = "A longer sentence than one token, so the count runs ahead."

    mapper.chunks(response(candidate(text=text), usage=usage_metadata(prompt=9, candidates=1)))

    assert usage.exact is False
    assert usage.prompt_tokens == 9
    assert usage.completion_tokens == count_tokens(text, family="gemini")


def test_two_function_calls_in_one_turn_get_their_own_index_and_id() -> None:
    mapper = StreamMapper(n=1, usage=Usage())

    chunks = mapper.chunks(
        response(
            candidate(
                calls=(("weather", {"city": "Paris"}), ("time", {"zone": "CET"})), finish="STOP"
            )
        )
    )

    deltas = [choice["delta"] for choice in choices(chunks)]
    first, second = deltas[0]["tool_calls"][0], deltas[1]["tool_calls"][0]
    assert (deltas[0]["role"], deltas[0]["content"]) == ("assistant", None)
    assert "role" not in deltas[1]
    assert (first["index"], first["type"], first["function"]) == (
        0,
        "function",
        {"name": "weather", "arguments": '{"city": "Paris"}'},
    )
    assert (second["index"], second["function"]["name"]) == (1, "time")
    assert json.loads(second["function"]["arguments"]) == {"zone": "CET"}
    assert first["id"].startswith("call_") and second["id"].startswith("call_")
    assert first["id"] != second["id"]
    assert finishes(chunks) == {0: ["tool_calls"]}


def test_parallel_tool_calls_false_keeps_the_first_call() -> None:
    mapper = StreamMapper(n=1, usage=Usage(), parallel_tool_calls=False)

    chunks = mapper.chunks(
        response(candidate(calls=(("weather", {}), ("time", {})), finish="STOP"))
    )

    calls = [c["delta"]["tool_calls"][0] for c in choices(chunks) if "tool_calls" in c["delta"]]
    assert [call["function"]["name"] for call in calls] == ["weather"]


def test_candidates_map_to_choices_by_index() -> None:
    mapper = StreamMapper(n=2, usage=Usage())

    chunks = mapper.chunks(response(candidate(0, text="A"), candidate(1, text="B")))
    chunks += mapper.chunks(
        response(candidate(1, text="b", finish="MAX_TOKENS"), candidate(0, finish="STOP"))
    )

    assert (text_of(chunks, 0), text_of(chunks, 1)) == ("A", "Bb")
    assert finishes(chunks) == {0: ["stop"], 1: ["length"]}


@pytest.mark.parametrize(
    "reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"]
)
def test_a_filtered_candidate_finishes_with_content_filter(reason: str) -> None:
    mapper = StreamMapper(n=1, usage=Usage())

    chunks = mapper.chunks(response(candidate(finish=reason)))

    assert chunks == [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": None},
                    "finish_reason": "content_filter",
                }
            ]
        }
    ]


def test_a_blocked_prompt_finishes_every_choice_with_content_filter_and_no_content() -> None:
    usage = Usage()
    mapper = StreamMapper(n=2, usage=usage)

    chunks = mapper.chunks(
        response(block_reason="SAFETY", usage=usage_metadata(prompt=7, candidates=0))
    )

    assert finishes(chunks) == {0: ["content_filter"], 1: ["content_filter"]}
    assert text_of(chunks, 0) == text_of(chunks, 1) == ""
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (7, 0, True)


def test_nothing_follows_a_choice_finish() -> None:
    mapper = StreamMapper(n=1, usage=Usage())

    chunks = mapper.chunks(response(candidate(text="Done", finish="STOP")))
    chunks += mapper.chunks(response(candidate(text="more", finish="STOP")))

    assert finishes(chunks) == {0: ["stop"]}
    assert text_of(chunks) == "Done"


def test_an_error_object_in_the_stream_is_a_retryable_error() -> None:
    mapper = StreamMapper(n=1, usage=Usage())

    with pytest.raises(ProviderError) as raised:
        mapper.chunks({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}})

    assert (raised.value.status, raised.value.code, raised.value.retryable) == (
        502,
        "upstream_error",
        True,
    )


# --- Prompt bound and availability ---------------------------------------------------------


def test_prompt_token_bound_counts_bytes_tools_and_images() -> None:
    content = [
        {"type": "text", "text": "Qué es"},
        {"type": "image_url", "image_url": {"url": PNG}},
    ]
    request = chat(
        messages=[{"role": "system", "content": "abc"}, {"role": "user", "content": content}],
        tools=[WEATHER],
    )
    tool_bytes = len(request.tools[0].model_dump_json(exclude_none=True).encode())  # type: ignore[index]

    bound = provider("http://unused").prompt_token_bound(request)

    assert bound == 32 + 2 * 8 + len("abc") + len("Qué es".encode()) + tool_bytes + 4128
    assert IMAGE_TOKEN_ALLOWANCE == 4128


def test_prompt_token_bound_of_a_completion_request() -> None:
    request = CompletionRequest.model_validate({"model": "m", "prompt": [[1, 2, 3], [4]]})

    assert provider("http://unused").prompt_token_bound(request) == 32 + 4


def test_availability_needs_the_key_the_route_names() -> None:
    open_route = UpstreamRoute(provider="gemini", model="gemini-2.5-flash")
    open_entry = CatalogEntry(
        id="open", kind=Kind.CHAT, routes=(open_route,), context_length=8, description=""
    )

    assert provider("http://x").is_available() is True
    assert provider("http://x", api_key="").is_available() is False
    assert GeminiProvider(open_entry, open_route, base_url="http://x", api_key="").is_available()


# --- Transport against the fake -----------------------------------------------------------


async def test_a_streamed_chat_reaches_gemini_and_maps_back() -> None:
    fake = GeminiFake()
    with serve(fake) as base_url:
        chunks, usage = await run(provider(base_url), chat(stream=True), max_tokens=50)

    (call,) = fake.received
    assert call.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert call.query == "alt=sse"
    assert call.headers["x-goog-api-key"] == API_KEY
    assert call.body["generationConfig"]["maxOutputTokens"] == 50
    assert text_of(chunks) == "Hello there."
    assert finishes(chunks) == {0: ["stop"]}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (5, 3, True)
    assert (usage.provider, usage.route_index, usage.upstream_model) == (
        "gemini",
        0,
        MODEL_VERSION,
    )


async def test_prompt_tokens_are_counted_by_count_tokens() -> None:
    fake = GeminiFake()
    request = chat(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        temperature=0.3,
        top_k=2,
    )
    with serve(fake) as base_url:
        counted = await provider(base_url).count_prompt_tokens(request)

    (call,) = fake.received
    assert call.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert call.body == {
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        }
    }
    assert counted == tokens_counted(call.body) == (3 + 2) + (3 + 1)


async def test_a_request_without_stream_uses_generate_content() -> None:
    fake = GeminiFake()
    with serve(fake) as base_url:
        chunks, usage = await run(provider(base_url), chat())

    assert fake.received[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert fake.received[0].query == ""
    assert text_of(chunks) == "Hello there."
    assert finishes(chunks) == {0: ["stop"]}
    assert (usage.completion_tokens, usage.exact) == (3, True)


async def test_two_candidates_stream_as_two_choices() -> None:
    fake = GeminiFake()
    fake.script(
        Stream(
            [
                response(candidate(0, text="One"), candidate(1, text="Two")),
                response(
                    candidate(0, finish="STOP"),
                    candidate(1, text="!", finish="STOP"),
                    usage=usage_metadata(prompt=4, candidates=3),
                ),
            ]
        )
    )
    with serve(fake) as base_url:
        chunks, usage = await run(provider(base_url), chat(n=2, stream=True))

    assert fake.received[0].body["generationConfig"]["candidateCount"] == 2
    assert (text_of(chunks, 0), text_of(chunks, 1)) == ("One", "Two!")
    assert finishes(chunks) == {0: ["stop"], 1: ["stop"]}
    assert (usage.completion_tokens, usage.exact) == (3, True)


async def test_function_calls_and_their_results_round_trip() -> None:
    fake = GeminiFake()
    calls = (("weather", {"city": "Paris"}), ("time", {"zone": "CET"}))
    fake.script(Stream([response(candidate(calls=calls, finish="STOP"))]))
    with serve(fake) as base_url:
        gemini = provider(base_url)
        chunks, _ = await run(gemini, chat(tools=[WEATHER], tool_choice="auto", stream=True))
        made = [
            c["delta"]["tool_calls"][0] for c in choices(chunks) if c["delta"].get("tool_calls")
        ]
        history = [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**c, "index": None} for c in made],
            },
            {"role": "tool", "tool_call_id": made[1]["id"], "content": '"12:00"'},
            {"role": "tool", "tool_call_id": made[0]["id"], "content": '{"temp": 21}'},
        ]
        answer, _ = await run(gemini, chat(messages=history, tools=[WEATHER], stream=True))

    assert finishes(chunks) == {0: ["tool_calls"]}
    assert fake.received[0].body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    replayed = fake.received[1].body["contents"]
    assert [part["functionCall"] for part in replayed[1]["parts"]] == [
        {"name": "weather", "args": {"city": "Paris"}},
        {"name": "time", "args": {"zone": "CET"}},
    ]
    assert [part["functionResponse"] for part in replayed[2]["parts"]] == [
        {"name": "time", "response": {"result": "12:00"}},
        {"name": "weather", "response": {"temp": 21}},
    ]
    assert text_of(answer) == "Hello there."


async def test_images_reach_gemini_as_parts_it_accepts() -> None:
    fake = GeminiFake()
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    with serve(fake) as base_url:
        chunks, _ = await run(
            provider(base_url), chat(messages=[{"role": "user", "content": content}])
        )

    parts = fake.received[0].body["contents"][0]["parts"]
    assert [sorted(part) for part in parts] == [["text"], ["inlineData"], ["fileData"]]
    assert finishes(chunks) == {0: ["stop"]}


async def test_a_safety_block_ends_with_content_filter() -> None:
    fake = GeminiFake()
    fake.script(
        Stream(
            [
                response(
                    block_reason="PROHIBITED_CONTENT", usage=usage_metadata(prompt=6, candidates=0)
                )
            ]
        )
    )
    with serve(fake) as base_url:
        chunks, usage = await run(provider(base_url), chat(stream=True))

    assert finishes(chunks) == {0: ["content_filter"]}
    assert text_of(chunks) == ""
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (6, 0, True)


async def test_usage_with_cached_and_thought_tokens() -> None:
    fake = GeminiFake()
    metadata = usage_metadata(prompt=2000, candidates=40, thoughts=300, cached=1500)
    fake.script(Stream([response(candidate(text="Answer", finish="STOP"), usage=metadata)]))
    with serve(fake) as base_url:
        _, usage = await run(provider(base_url), chat(stream=True))

    assert (usage.prompt_tokens, usage.cached_tokens) == (2000, 1500)
    assert (usage.completion_tokens, usage.reasoning_tokens) == (340, 300)
    assert usage.exact is True


async def test_an_unsupported_parameter_never_reaches_gemini() -> None:
    fake = GeminiFake()
    with serve(fake) as base_url, pytest.raises(ProviderError) as raised:
        await run(provider(base_url), chat(logit_bias={"1": 5}))

    assert (raised.value.status, raised.value.param) == (400, "logit_bias")
    assert fake.received == []


async def test_complete_is_refused_without_a_call() -> None:
    fake = GeminiFake()
    request = CompletionRequest.model_validate({"model": "gemini-flash", "prompt": "Once"})
    with serve(fake) as base_url, pytest.raises(ProviderError) as raised:
        async for _ in provider(base_url).complete(request, max_tokens=5, usage=Usage()):
            pass

    assert (raised.value.status, raised.value.code) == (400, "unsupported_endpoint")
    assert fake.received == []


async def expect_error(fake: GeminiFake, base_url: str, **fields: Any) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        await run(provider(base_url, **fields), chat(stream=True))
    return raised.value


async def test_refused_connection_is_retryable() -> None:
    error = await expect_error(GeminiFake(), closed_port_url())

    assert (error.status, error.code, error.retryable) == (502, "upstream_unavailable", True)


async def test_a_timeout_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT_S", 0.2)
    fake = GeminiFake()
    fake.script(Slow(1.0))
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url)

    assert (error.status, error.code, error.retryable) == (504, "upstream_timeout", True)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retryable(status: int) -> None:
    fake = GeminiFake()
    fake.script(Status(status, "The model is overloaded."))
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url)

    assert (error.status, error.code, error.retryable) == (502, "upstream_error", True)
    assert "The model is overloaded." in error.message


async def test_a_429_is_retryable_after_its_retry_after() -> None:
    fake = GeminiFake()
    fake.script(Status(429, "Resource has been exhausted.", headers={"Retry-After": "7"}))
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url)

    assert (error.status, error.code, error.retryable) == (503, "upstream_rate_limited", True)
    assert error.retry_after_s == 7.0


async def test_a_429_is_retryable_after_gemini_s_retry_info() -> None:
    fake = GeminiFake()
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}
    fake.script(Status(429, "You exceeded your current quota.", details=[retry_info]))
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url)

    assert (error.status, error.code, error.retryable) == (503, "upstream_rate_limited", True)
    assert error.retry_after_s == 12.5


async def test_invalid_argument_passes_back_as_a_400() -> None:
    fake = GeminiFake()
    fake.script(Status(400, "Request contains an invalid argument."))
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url)

    assert (error.status, error.code, error.retryable) == (400, "invalid_request", False)
    assert error.message == "Request contains an invalid argument."


async def test_a_rejected_api_key_is_the_route_s_fault() -> None:
    fake = GeminiFake()
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url, api_key="wrong")

    assert (error.status, error.code, error.retryable) == (502, "upstream_misconfigured", True)
    assert "API key not valid" in error.message


async def test_a_stream_cut_mid_way_is_retryable_and_billed_for_what_came() -> None:
    fake = GeminiFake()
    fake.script(Stream([response(candidate(text="Partial answer")), response()], cut_after=1))
    usage = Usage()
    with serve(fake) as base_url:
        received = []
        with pytest.raises(ProviderError) as raised:
            async for chunk in provider(base_url).chat(
                chat(stream=True), max_tokens=9, usage=usage
            ):
                received.append(chunk)

    assert (raised.value.status, raised.value.retryable) == (502, True)
    assert text_of(received) == "Partial answer"
    assert usage.completion_tokens == count_tokens("Partial answer", family="gemini")
    assert usage.prompt_tokens == count_tokens("Hi", family="gemini")  # no usageMetadata came
    assert (usage.exact, usage.upstream_model) == (False, MODEL_VERSION)


async def test_a_malformed_chunk_is_retryable() -> None:
    fake = GeminiFake()
    fake.script(Stream([response(candidate(text="a")), response()], malformed_after=1))
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url)

    assert (error.status, error.code, error.retryable) == (502, "upstream_malformed", True)


async def test_a_stream_that_ends_before_its_finish_is_retryable() -> None:
    fake = GeminiFake()
    fake.script(Stream([response(candidate(text="a"))]))
    with serve(fake) as base_url:
        error = await expect_error(fake, base_url)

    assert (error.status, error.code, error.retryable) == (502, "upstream_malformed", True)


async def test_closing_early_closes_the_connection() -> None:
    fake = GeminiFake()
    fake.script(Stream([response(candidate(text="first"))], hold_open=True))
    with serve(fake) as base_url:
        stream = provider(base_url).chat(chat(stream=True), max_tokens=9, usage=Usage())
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        assert await asyncio.to_thread(fake.disconnected.wait, 5)

    assert choices([first])[0]["delta"]["content"] == "first"


# --- Embeddings ---------------------------------------------------------------------------


def embedder(base_url: str) -> GeminiProvider:
    return GeminiProvider(EMBED_ENTRY, EMBED_ROUTE, base_url=base_url, api_key=API_KEY)


async def test_embeddings_are_batched_by_100_in_input_order() -> None:
    fake = GeminiFake(model="gemini-embedding-001")
    texts = ["word " * (index % 7 + 1) for index in range(250)]
    with serve(fake) as base_url:
        result = await embedder(base_url).embed(
            EmbeddingRequest.model_validate({"model": "gemini-embed", "input": texts})
        )

    assert [call.path for call in fake.received] == [
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    ] * 3
    assert [len(call.body["requests"]) for call in fake.received] == [100, 100, 50]
    assert fake.received[0].body["requests"][0] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "word "}]},
    }
    assert result.vectors.dtype == np.float32
    assert result.vectors.shape == (250, 3)
    assert result.vectors[8].tolist() == [10.0, 2.0, 0.5]  # "word word " (index 8)
    expected_tokens = sum(count_tokens(text, family="gemini") for text in texts)
    assert (result.usage.prompt_tokens, result.usage.exact) == (expected_tokens, False)
    assert (result.usage.provider, result.usage.upstream_model) == (
        "gemini",
        "gemini-embedding-001",
    )


async def test_token_array_inputs_are_a_400_without_a_call() -> None:
    fake = GeminiFake(model="gemini-embedding-001")
    with serve(fake) as base_url, pytest.raises(ProviderError) as raised:
        await embedder(base_url).embed(
            EmbeddingRequest.model_validate({"model": "gemini-embed", "input": [[1, 2]]})
        )

    assert (raised.value.status, raised.value.param) == (400, "input")
    assert fake.received == []


async def test_an_embedding_error_is_mapped() -> None:
    fake = GeminiFake(model="gemini-embedding-001")
    fake.script(Status(503, "Unavailable"))
    with serve(fake) as base_url, pytest.raises(ProviderError) as raised:
        await embedder(base_url).embed(
            EmbeddingRequest.model_validate({"model": "gemini-embed", "input": "hi"})
        )

    assert (raised.value.status, raised.value.retryable) == (502, True)
