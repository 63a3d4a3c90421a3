"""OpenAIProvider against the loopback OpenAI fake (bodies, usage, faults) and against a real
llama.cpp server (what an OpenAI-compatible server really streams and counts)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from apps.catalog.entries import CatalogEntry, Kind, UpstreamRoute
from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from apps.providers.base import Chunk, Usage
from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.openai import (
    IMAGE_TOKEN_BOUND,
    MESSAGE_OVERHEAD_TOKENS,
    TOOLS_OVERHEAD_TOKENS,
    OpenAIProvider,
)
from apps.providers.upstream.tokens import count_tokens
from tests.fakes.openai_api import (
    REQUEST_ID,
    EmbeddingsReply,
    Error,
    FakeOpenAI,
    Stream,
    openai_usage,
)
from tests.fakes.server import serve
from tests.upstreams.llamacpp import LlamaCppServer, llamacpp_fixture  # noqa: F401 - `llamacpp`

ROUTE = UpstreamRoute(provider="openai", model="gpt-4o-mini-2024-07-18", api_key_env="KEY")
ENTRY = CatalogEntry(
    id="gpt-4o-mini", kind=Kind.CHAT, routes=(ROUTE,), context_length=128_000, description="t"
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI(api_key="sk-test")


@pytest.fixture
def base_url(fake: FakeOpenAI) -> Iterator[str]:
    with serve(fake) as url:
        yield url + "/v1"


def provider_at(base_url: str, *, api_key: str = "sk-test") -> OpenAIProvider:
    return OpenAIProvider(ENTRY, ROUTE, base_url=base_url, api_key=api_key)


def chat_request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "gpt-4o-mini", "messages": HELLO, **fields}
    )


async def collected(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


async def failure_of(chunks: AsyncIterator[Chunk], *, into: list[Chunk]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        async for chunk in chunks:
            into.append(chunk)
    return caught.value


# --- the request sent upstream -------------------------------------------------------------


async def test_chat_passes_the_client_fields_through_and_forces_model_limit_and_stream(
    fake: FakeOpenAI, base_url: str
) -> None:
    sent = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Answer in JSON."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.png", "detail": "high"},
                    },
                ],
            },
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "seed": 7,
        "stop": ["\n\n"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,  # not OpenAI's (vLLM's, llama.cpp's): the server decides, as sent
        "user": "user-1234",
        "reasoning_effort": "low",  # unknown to Plugsky's schema: passed on as sent
        "max_tokens": 100,
        "stream": False,
    }
    request = ChatCompletionRequest.model_validate(sent)

    await collected(provider_at(base_url).chat(request, max_tokens=64, usage=Usage()))

    expected = {
        **sent,
        "model": "gpt-4o-mini-2024-07-18",
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert fake.received[0].path == "/v1/chat/completions"
    assert fake.received[0].body == expected


async def test_chat_keeps_the_clients_max_completion_tokens_name_and_stream_options(
    fake: FakeOpenAI, base_url: str
) -> None:
    request = chat_request(
        max_completion_tokens=500,
        stream=True,
        stream_options={"include_usage": False, "include_obfuscation": False},
    )

    await collected(provider_at(base_url).chat(request, max_tokens=200, usage=Usage()))

    assert fake.received[0].body == {
        "model": "gpt-4o-mini-2024-07-18",
        "messages": HELLO,
        "max_completion_tokens": 200,
        "stream": True,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
    }


async def test_chat_withholds_fields_that_change_what_the_operator_pays_or_keeps(
    fake: FakeOpenAI, base_url: str
) -> None:
    request = chat_request(service_tier="priority", store=True, metadata={"k": "v"})

    await collected(provider_at(base_url).chat(request, max_tokens=10, usage=Usage()))

    body = fake.received[0].body
    assert "service_tier" not in body
    assert "store" not in body
    assert body["metadata"] == {"k": "v"}


async def test_prompt_tokens_are_counted_by_estimate_without_calling_the_server(
    fake: FakeOpenAI, base_url: str
) -> None:
    provider = provider_at(base_url)
    short = await provider.count_prompt_tokens(chat_request())
    longer = await provider.count_prompt_tokens(
        chat_request(messages=[*HELLO, {"role": "user", "content": "And tell me a long story."}])
    )

    assert 0 < short < longer
    assert fake.received == []


async def test_the_api_key_goes_as_a_bearer_token(fake: FakeOpenAI, base_url: str) -> None:
    await collected(provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()))

    assert fake.received[0].headers["authorization"] == "Bearer sk-test"


async def test_an_empty_api_key_sends_no_authorization() -> None:
    keyless = FakeOpenAI(api_key=None)
    with serve(keyless) as url:
        await collected(
            provider_at(url + "/v1", api_key="").chat(chat_request(), max_tokens=10, usage=Usage())
        )

    assert "authorization" not in keyless.received[0].headers


# --- what comes back -------------------------------------------------------------------------


async def test_chat_yields_the_chunks_with_choices_and_reads_the_usage_chunk(
    fake: FakeOpenAI, base_url: str
) -> None:
    fake.reply = Stream(
        usage=openai_usage(prompt=1_200, completion=300, cached=1_024, reasoning=256)
    )
    usage = Usage()

    chunks = await collected(provider_at(base_url).chat(chat_request(), max_tokens=10, usage=usage))

    # role, "Hello", " there", "!", the finish chunk; not the usage chunk (its choices are []).
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Hello"},
        {"content": " there"},
        {"content": "!"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage == Usage(
        prompt_tokens=1_200,
        completion_tokens=300,
        cached_tokens=1_024,
        reasoning_tokens=256,
        provider="openai",
        upstream_model="gpt-4o-mini-2024-07-18",
        upstream_request_id=REQUEST_ID,
        exact=True,
    )


async def test_calls_reuse_one_connection(fake: FakeOpenAI, base_url: str) -> None:
    # The stream is read past [DONE] to the body's end, so its connection goes back to the pool
    # rather than being closed half-read (which cost a new TCP connection per call).
    provider = provider_at(base_url)
    for _ in range(3):
        await collected(provider.chat(chat_request(), max_tokens=8, usage=Usage()))
    ports = {received.client_port for received in fake.received}
    assert len(fake.received) == 3 and len(ports) == 1 and ports != {0}


async def test_n_choices_come_interleaved_by_index(fake: FakeOpenAI, base_url: str) -> None:
    chunks = await collected(
        provider_at(base_url).chat(chat_request(n=2), max_tokens=10, usage=Usage())
    )

    assert [[choice["index"] for choice in chunk["choices"]] for chunk in chunks] == [[0, 1]] * 5


async def test_tool_call_deltas_pass_through(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Stream(
        texts=(), tool_call=("get_weather", ('{"city"', ': "Paris"}')), finish_reason="tool_calls"
    )
    request = chat_request(tools=[WEATHER_TOOL])

    chunks = await collected(provider_at(base_url).chat(request, max_tokens=10, usage=Usage()))

    calls = [chunk["choices"][0]["delta"]["tool_calls"][0] for chunk in chunks[1:4]]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert "".join(call["function"]["arguments"] for call in calls) == '{"city": "Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_usage_is_estimated_while_the_stream_runs(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Stream(tool_call=("get_weather", ('{"city": "Paris"}',)))
    usage = Usage()
    seen: list[tuple[int, int, bool]] = []

    async for _ in provider_at(base_url).chat(chat_request(), max_tokens=10, usage=usage):
        seen.append((usage.prompt_tokens, usage.completion_tokens, usage.exact))

    prompt = count_tokens("userSay hello.", family="openai") + 3 + 3
    arguments = count_tokens('{"city": "Paris"}', family="openai")
    name = count_tokens("get_weather", family="openai")
    # The role chunk, 3 text chunks ("Hello", " there", "!": a token each), 2 tool-call chunks,
    # the finish chunk.
    assert seen == [
        (prompt, 0, False),
        (prompt, 1, False),
        (prompt, 2, False),
        (prompt, 3, False),
        (prompt, 3 + name, False),
        (prompt, 3 + name + arguments, False),
        (prompt, 3 + name + arguments, False),
    ]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (19, 3, True)


# --- faults ----------------------------------------------------------------------------------


async def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed

    error = await failure_of(
        provider_at(f"http://127.0.0.1:{port}/v1").chat(
            chat_request(), max_tokens=10, usage=Usage()
        ),
        into=[],
    )

    assert (error.status, error.code, error.retryable) == (502, "upstream_unavailable", True)


async def test_a_read_timeout_is_retryable(
    fake: FakeOpenAI, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT_S", 0.2)
    fake.reply = Stream(delay_s=1.0)

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=[]
    )

    assert (error.status, error.code, error.retryable) == (504, "upstream_timeout", True)


async def test_a_500_is_retryable(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Error(
        500, "The server had an error while processing your request.", type="server_error"
    )

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=[]
    )

    assert (error.status, error.code, error.retryable) == (502, "upstream_error", True)
    assert "The server had an error while processing your request." in error.message


async def test_a_429_is_retryable_after_its_retry_after(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Error(
        429,
        "Rate limit reached for gpt-4o-mini on tokens per min (TPM).",
        type="tokens",
        code="rate_limit_exceeded",
        headers=(("retry-after", "7"),),
    )

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=[]
    )

    assert (error.status, error.code, error.retryable, error.retry_after_s) == (
        503,
        "upstream_rate_limited",
        True,
        7.0,
    )


async def test_a_400_goes_back_with_its_param_and_is_not_retried(
    fake: FakeOpenAI, base_url: str
) -> None:
    message = "Invalid 'messages[0].content': string too long."
    fake.reply = Error(400, message, param="messages[0].content", code="string_above_max_length")

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=[]
    )

    assert (error.status, error.message, error.param, error.code, error.retryable) == (
        400,
        message,
        "messages[0].content",
        "string_above_max_length",
        False,
    )
    assert error.type == "invalid_request_error"


async def test_a_wrong_api_key_is_a_misconfigured_route(base_url: str) -> None:
    error = await failure_of(
        provider_at(base_url, api_key="sk-wrong").chat(
            chat_request(), max_tokens=10, usage=Usage()
        ),
        into=[],
    )

    assert (error.status, error.code, error.retryable) == (502, "upstream_misconfigured", True)


async def test_a_stream_cut_midway_is_not_retryable_and_bills_what_came(
    fake: FakeOpenAI, base_url: str
) -> None:
    fake.reply = Stream(cut_after=3)  # role, "Hello", " there"; then the connection drops
    usage, chunks = Usage(), list[Chunk]()

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=usage), into=chunks
    )

    assert len(chunks) == 3
    assert (error.status, error.code, error.retryable) == (502, "upstream_unavailable", False)
    assert (usage.completion_tokens, usage.exact) == (2, False)


async def test_a_stream_cut_before_any_chunk_is_retryable(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Stream(cut_after=0)

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=[]
    )

    assert (error.status, error.code, error.retryable) == (502, "upstream_unavailable", True)


async def test_a_stream_that_ends_without_done_is_malformed(
    fake: FakeOpenAI, base_url: str
) -> None:
    fake.reply = Stream(end_without_done=True)
    chunks: list[Chunk] = []

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=chunks
    )

    assert len(chunks) == 5
    assert (error.status, error.code, error.retryable) == (502, "upstream_malformed", False)


async def test_a_malformed_chunk_after_the_first(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Stream(malformed_after=1)
    chunks: list[Chunk] = []

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=chunks
    )

    assert len(chunks) == 1
    assert (error.status, error.code, error.retryable) == (502, "upstream_malformed", False)


async def test_a_malformed_first_chunk_is_retryable(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Stream(malformed_after=0)

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=[]
    )

    assert (error.status, error.code, error.retryable) == (502, "upstream_malformed", True)


async def test_an_error_object_in_the_stream_ends_it(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = Stream(error_after=2)
    chunks: list[Chunk] = []

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=chunks
    )

    assert len(chunks) == 2
    assert (error.status, error.code, error.retryable) == (502, "upstream_error", False)
    assert error.message.endswith("failed mid-stream: The model overloaded.")


async def test_a_429_retry_after_ms_is_read_first(fake: FakeOpenAI, base_url: str) -> None:
    # OpenAI sends Retry-After in whole seconds and retry-after-ms, which its SDKs read first.
    fake.reply = Error(
        429, "Rate limit reached.", headers=(("retry-after", "2"), ("retry-after-ms", "1500"))
    )

    error = await failure_of(
        provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage()), into=[]
    )

    assert error.retry_after_s == 1.5


async def test_closing_the_iterator_closes_the_upstream_connection(
    fake: FakeOpenAI, base_url: str
) -> None:
    fake.reply = Stream(endless=True)
    chunks = provider_at(base_url).chat(chat_request(), max_tokens=10, usage=Usage())

    first = [await anext(chunks), await anext(chunks)]
    await chunks.aclose()  # type: ignore[attr-defined]

    assert [chunk["choices"][0]["delta"] for chunk in first] == [{"content": "tick"}] * 2
    # Off the loop: the socket is closed by the loop, which a blocking wait would stall.
    assert await asyncio.to_thread(fake.disconnected.wait, 5)


# --- legacy completions and embeddings -------------------------------------------------------


async def test_complete_streams_text_completion_chunks(fake: FakeOpenAI, base_url: str) -> None:
    request = CompletionRequest.model_validate(
        {"model": "gpt-4o-mini", "prompt": "Once upon", "echo": False, "suffix": "end"}
    )
    usage = Usage()

    chunks = await collected(provider_at(base_url).complete(request, max_tokens=16, usage=usage))

    assert fake.received[0].path == "/v1/completions"
    assert fake.received[0].body == {
        "model": "gpt-4o-mini-2024-07-18",
        "prompt": "Once upon",
        "echo": False,
        "suffix": "end",
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert [chunk["choices"][0]["text"] for chunk in chunks] == ["Hello", " there", "!", ""]
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (19, 3, True)


async def test_embed_asks_for_floats_at_full_width(fake: FakeOpenAI, base_url: str) -> None:
    fake.reply = EmbeddingsReply(vectors=((0.25, -0.5, 1.0), (1.5, 0.0, -2.0)), prompt_tokens=8)
    request = EmbeddingRequest.model_validate(
        {
            "model": "emb",
            "input": ["a cat", "a dog"],
            "dimensions": 2,
            "encoding_format": "base64",
            "user": "u1",
        }
    )

    embeddings = await provider_at(base_url).embed(request)

    assert fake.received[0].body == {
        "model": "gpt-4o-mini-2024-07-18",
        "input": ["a cat", "a dog"],
        "encoding_format": "float",
        "user": "u1",
    }
    assert embeddings.vectors.dtype == np.float32
    assert embeddings.vectors.tolist() == [[0.25, -0.5, 1.0], [1.5, 0.0, -2.0]]
    assert embeddings.usage == Usage(
        prompt_tokens=8,
        provider="openai",
        upstream_model="text-embedding-3-small",
        upstream_request_id=REQUEST_ID,
        exact=True,
    )


async def test_embed_decodes_base64_when_the_server_sends_it(
    fake: FakeOpenAI, base_url: str
) -> None:
    fake.reply = EmbeddingsReply(vectors=((0.125, -3.5),), force_base64=True)

    embeddings = await provider_at(base_url).embed(
        EmbeddingRequest.model_validate({"model": "e", "input": "hi"})
    )

    assert embeddings.vectors.tolist() == [[0.125, -3.5]]


async def test_embed_refuses_a_vector_count_that_does_not_match(
    fake: FakeOpenAI, base_url: str
) -> None:
    fake.reply = EmbeddingsReply(vectors=((0.1, 0.2),))
    request = EmbeddingRequest.model_validate({"model": "e", "input": ["one", "two"]})

    with pytest.raises(ProviderError) as caught:
        await provider_at(base_url).embed(request)

    assert (caught.value.status, caught.value.code) == (502, "upstream_malformed")


# --- bounds ----------------------------------------------------------------------------------


def test_prompt_token_bound_of_a_chat_with_an_image_and_tools() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    request = chat_request(
        messages=[{"role": "user", "content": [{"type": "text", "text": "Décris"}, image]}],
        tools=[WEATHER_TOOL],
    )
    tools_json = json.dumps([WEATHER_TOOL], ensure_ascii=False)

    bound = provider_at("http://unused/v1").prompt_token_bound(request)

    text_bytes = len(b"user") + len("Décris".encode())
    assert bound == (
        text_bytes
        + 2 * MESSAGE_OVERHEAD_TOKENS
        + IMAGE_TOKEN_BOUND
        + len(tools_json.encode())
        + TOOLS_OVERHEAD_TOKENS
    )


def test_prompt_token_bound_of_completions_counts_each_prompt_once() -> None:
    provider = provider_at("http://unused/v1")
    texts = CompletionRequest.model_validate({"model": "m", "prompt": ["abc", "défg"], "n": 3})
    tokens = CompletionRequest.model_validate({"model": "m", "prompt": [[1, 2, 3], [4]]})

    assert provider.prompt_token_bound(texts) == (3 + MESSAGE_OVERHEAD_TOKENS) + (
        5 + MESSAGE_OVERHEAD_TOKENS
    )
    assert provider.prompt_token_bound(tokens) == 4


def test_is_available_once_built() -> None:
    assert provider_at("http://unused/v1").is_available() is True


# --- a real llama.cpp server -----------------------------------------------------------------


def llama_provider(server: LlamaCppServer) -> OpenAIProvider:
    route = UpstreamRoute(provider="openai", model="smollm2", base_urls=(server.base_url,))
    entry = CatalogEntry(
        id="smollm2", kind=Kind.CHAT, routes=(route,), context_length=2048, description="t"
    )
    return OpenAIProvider(entry, route, base_url=server.base_url, api_key=server.api_key)


def llama_reported(
    server: LlamaCppServer, body: dict[str, Any], *, path: str = "chat/completions"
) -> Any:
    """llama.cpp's own usage for `body`, asked directly and not streamed."""
    response = httpx.post(
        f"{server.base_url}/{path}",
        json={**body, "stream": False},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    return response.json()["usage"]


GREEDY = {"temperature": 0, "seed": 1, "max_tokens": 12}


@pytest.mark.parametrize("stream", [True, False])
async def test_llamacpp_chat_usage_is_llamacpps_own(llamacpp: LlamaCppServer, stream: bool) -> None:
    request = chat_request(messages=HELLO, stream=stream, **GREEDY)
    usage = Usage()

    chunks = await collected(llama_provider(llamacpp).chat(request, max_tokens=12, usage=usage))

    reported = llama_reported(llamacpp, {"model": "smollm2", "messages": HELLO, **GREEDY})
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        reported["prompt_tokens"],
        reported["completion_tokens"],
    )
    assert usage.exact is True
    assert usage.upstream_model == llamacpp.model_path
    assert usage.upstream_request_id.startswith("chatcmpl-")
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")


async def test_llamacpp_renders_the_tools_into_the_prompt(llamacpp: LlamaCppServer) -> None:
    # No built-in GGUF emits tool calls (see the report); what is checked is that llama.cpp took
    # the `tools` definition into its prompt, counted exactly as it counts it.
    with_tools, without = Usage(), Usage()
    provider = llama_provider(llamacpp)

    await collected(
        provider.chat(chat_request(tools=[WEATHER_TOOL], **GREEDY), max_tokens=12, usage=with_tools)
    )
    await collected(provider.chat(chat_request(**GREEDY), max_tokens=12, usage=without))

    reported = llama_reported(
        llamacpp, {"model": "smollm2", "messages": HELLO, "tools": [WEATHER_TOOL], **GREEDY}
    )
    assert with_tools.prompt_tokens == reported["prompt_tokens"]
    assert with_tools.prompt_tokens > without.prompt_tokens + 40  # the tool's JSON and instructions


async def test_llamacpp_completions_read_usage_from_the_last_choice_chunk(
    llamacpp: LlamaCppServer,
) -> None:
    # llama.cpp puts `usage` on the chunk with the finish reason, not on a chunk of its own.
    body = {"model": "smollm2", "prompt": "Once upon a time", **GREEDY}
    usage = Usage()

    chunks = await collected(
        llama_provider(llamacpp).complete(
            CompletionRequest.model_validate(body), max_tokens=12, usage=usage
        )
    )

    reported = llama_reported(llamacpp, body, path="completions")
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (
        reported["prompt_tokens"],
        12,
        True,
    )


async def test_llamacpp_without_embeddings_is_an_upstream_failure(llamacpp: LlamaCppServer) -> None:
    request = EmbeddingRequest.model_validate({"model": "smollm2", "input": "hi"})

    with pytest.raises(ProviderError) as caught:
        await llama_provider(llamacpp).embed(request)

    # llama.cpp answers 501 "This server does not support embeddings": the route's fault.
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (
        502,
        "upstream_error",
        True,
    )


async def test_llamacpp_refuses_a_wrong_key(llamacpp: LlamaCppServer) -> None:
    provider = OpenAIProvider(ENTRY, ROUTE, base_url=llamacpp.base_url, api_key="wrong")

    error = await failure_of(
        provider.chat(chat_request(**GREEDY), max_tokens=12, usage=Usage()), into=[]
    )

    assert (error.status, error.code, error.retryable) == (502, "upstream_misconfigured", True)


async def test_a_kept_alive_connection_the_server_closed_is_retried_on_a_new_one() -> None:
    # The server answers a connection's first request and drops its second one unanswered, as a
    # server that closes a kept-alive connection at the moment a request goes out.
    choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n"
    requests_per_connection: list[int] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests_per_connection.append(0)
        while True:
            request_head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", request_head, re.IGNORECASE)
            await reader.readexactly(int(length.group(1)) if length else 0)
            requests_per_connection[-1] += 1
            if requests_per_connection[-1] > 1:
                writer.close()
                return
            writer.write(head % len(body) + body)
            await writer.drain()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = provider_at(f"http://127.0.0.1:{port}/v1")
    async with server:
        for _ in range(2):
            chunks = await collected(provider.chat(chat_request(), max_tokens=8, usage=Usage()))
            assert chunks[0]["choices"][0]["delta"]["content"] == "hi"
    assert requests_per_connection == [2, 1]  # the dropped request went again, on a new one
