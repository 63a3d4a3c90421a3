"""Serving returns data (a priced body, or a stream of chunk dicts); only the view speaks HTTP.

The serving tests run on the scripted engine of test_settlement_failures (no model).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
import pytest
from django.http import JsonResponse, StreamingHttpResponse

from apps.gateway import views
from apps.gateway.serving import chat, embeddings
from apps.gateway.serving.common import CallContext, Priced
from apps.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from apps.providers import registry
from apps.usage.models import UsageRecord
from tests.billing.helpers import new_request_id
from tests.gateway.test_settlement_failures import (
    HELLO,
    MODEL,
    ScriptedEngine,
    _balance,
    assert_billed,
    script,
)
from tests.sse import parse_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def engine(monkeypatch) -> ScriptedEngine:  # type: ignore[no-untyped-def]
    scripted = ScriptedEngine()
    monkeypatch.setattr(registry, "local_engine", lambda: scripted)
    return scripted


def _context(organization) -> CallContext:  # type: ignore[no-untyped-def]
    return CallContext(new_request_id(), organization_id=organization.pk, api_key_id=None)


def _chat(**body: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": MODEL, "messages": HELLO, **body})


# --- Serving returns data ---------------------------------------------------------------------


async def test_a_call_returns_its_body_and_what_it_was_charged(organization, engine):
    engine.scripts = [script(["Hel", "lo"])]
    ctx = _context(organization)

    result = await chat.create(_chat(), ctx)

    assert isinstance(result, Priced)
    assert result.body["object"] == "chat.completion"
    assert result.body["choices"][0]["message"]["content"] == "Hello"
    record = await UsageRecord.objects.aget(request_id=ctx.request_id)
    assert result.cost_micros == record.cost_micros > 0
    assert result.body["usage"]["cost"] == record.cost_micros / 1_000_000


async def test_a_streamed_call_returns_its_chunks_usage_last_when_asked(organization, engine):
    engine.scripts = [script(["Hel", "lo"])]
    ctx = _context(organization)

    stream = await chat.create(_chat(stream=True, stream_options={"include_usage": True}), ctx)

    assert not isinstance(stream, Priced)
    chunks = [chunk async for chunk in stream]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[:-1]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    record = await UsageRecord.objects.aget(request_id=ctx.request_id)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["cost"] == record.cost_micros / 1_000_000  # the charged cost
    assert (chunks[-1]["usage"]["prompt_tokens"], chunks[-1]["usage"]["completion_tokens"]) == (
        30,
        2,
    )


async def test_a_stream_without_include_usage_has_no_usage_chunk(organization, engine):
    engine.scripts = [script(["Hi"])]

    stream = await chat.create(_chat(stream=True), _context(organization))

    chunks = [chunk async for chunk in stream]  # type: ignore[union-attr]
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)


async def test_a_stream_closed_early_is_settled_once_for_what_ran(organization, engine):
    engine.scripts = [[*script(["a", "b"])[:1], 5.0, *script(["a", "b"])[1:]]]
    ctx = _context(organization)
    before = await _balance(organization)

    stream = await chat.create(_chat(stream=True), ctx)
    assert not isinstance(stream, Priced)
    assert (await anext(stream))["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (await anext(stream))["choices"][0]["delta"] == {"content": "a"}
    await stream.aclose()  # the client left while the engine was generating

    record = await assert_billed(organization, ctx.request_id, before, (30, 1))
    assert (record.status, record.is_client_disconnect) == (499, True)


async def test_embeddings_return_their_body_and_cost(organization, monkeypatch):
    class Embedder:
        def is_available(self, entry: Any) -> bool:
            return True

        async def embed(self, entry: Any, inputs: list[str]) -> tuple[np.ndarray, int]:
            return np.ones((len(inputs), 4), dtype=np.float32) / 2, 7

    monkeypatch.setattr(registry, "local_engine", lambda: Embedder())
    ctx = _context(organization)
    request = EmbeddingRequest.model_validate({"model": "plugsky-embed", "input": ["a", "b"]})

    result = await embeddings.create(request, ctx)

    assert [item["embedding"] for item in result.body["data"]] == [[0.5] * 4, [0.5] * 4]
    record = await UsageRecord.objects.aget(request_id=ctx.request_id)
    assert result.cost_micros == record.cost_micros
    assert result.body["usage"]["prompt_tokens"] == 7


# --- The view adapter speaks HTTP -------------------------------------------------------------


def test_a_priced_body_becomes_json_with_the_cost_header():
    response = views._http_response(Priced({"object": "list", "data": []}, 1234))

    assert isinstance(response, JsonResponse)
    assert json.loads(response.content) == {"object": "list", "data": []}
    assert response["x-plugsky-cost"] == "0.001234"


async def _chunks(
    *chunks: dict[str, Any], closed: list[str]
) -> AsyncGenerator[dict[str, Any], None]:
    try:
        for chunk in chunks:
            yield chunk
            await asyncio.sleep(0)
        closed.append("finished")
    except GeneratorExit:
        closed.append("closed early")
        raise


async def test_a_stream_becomes_server_sent_events_ended_by_done():
    closed: list[str] = []
    stream = _chunks({"id": "a", "choices": []}, {"error": {"message": "x"}}, closed=closed)

    response = views._http_response(stream)

    assert isinstance(response, StreamingHttpResponse) and response.is_async
    assert response["Content-Type"] == "text/event-stream"
    assert (response["Cache-Control"], response["X-Accel-Buffering"]) == ("no-cache", "no")
    raw = b"".join([part async for part in response.streaming_content])
    assert (
        raw
        == b'data: {"id":"a","choices":[]}\n\ndata: {"error":{"message":"x"}}\n\ndata: [DONE]\n\n'
    )
    assert parse_events(raw.decode()) == (
        [{"id": "a", "choices": []}, {"error": {"message": "x"}}],
        True,
    )
    assert closed == ["finished"]


async def test_closing_the_response_early_closes_the_serving_stream():
    closed: list[str] = []
    response = views._http_response(_chunks({"n": 1}, {"n": 2}, closed=closed))

    body = response._iterator  # type: ignore[attr-defined]  # what admission wraps and closes
    assert await anext(body) == b'data: {"n":1}\n\n'
    await body.aclose()

    assert closed == ["closed early"]
