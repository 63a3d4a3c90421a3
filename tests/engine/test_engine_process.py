"""The engine process and its client, end to end: the real engine of this test process (models
on llama.cpp, embedders, OCR) reached through EngineClient, as the gateway reaches it."""

from __future__ import annotations

import asyncio
import time

import pytest

from apps.catalog.builtin import BUILTIN_MODELS
from apps.catalog.entries import CatalogEntry, Kind, LocalRoute
from apps.providers.engine_client import EngineClient
from apps.providers.errors import ProviderError
from apps.providers.vision import ImageError
from tests.providers.test_vision_reader import invoice_png

ENTRIES = {entry.id: entry for entry in BUILTIN_MODELS}
NANO = ENTRIES["plugsky-nano"]
HELLO = [{"role": "user", "content": "Say hello."}]
STORY = [{"role": "user", "content": "Write a very long story about the sea."}]


@pytest.fixture
def client(engine_url: str) -> EngineClient:
    return EngineClient(engine_url)


async def _idle(client: EngineClient, timeout_s: float = 5) -> float:
    """Seconds until the engine runs no generation (a slot still busy would keep it above 0)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        health = await client.health()
        assert health is not None
        if health["running"] == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError("the engine still runs a generation")


async def test_a_chat_stream_crosses_as_the_engine_made_it(client: EngineClient) -> None:
    body = {"messages": HELLO, "max_tokens": 6, "temperature": 0, "timings_per_token": True}
    chunks = [chunk async for chunk in client.chat_stream(NANO, body)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"]
    )
    assert text
    assert chunks[-1]["timings"]["predicted_n"] == 6
    assert {chunk["model"] for chunk in chunks} == {"SmolLM2-135M-Instruct.Q4_1.gguf"}


async def test_a_completion_stream_and_a_seeded_one(client: EngineClient) -> None:
    body = {"prompt": "The capital of France is", "max_tokens": 4, "seed": 3, "temperature": 0.8}
    runs = []
    for isolated in (False, True, True):
        chunks = [c async for c in client.complete_stream(ENTRIES["plugsky-base"], body,
                                                          isolated=isolated)]  # fmt: skip
        runs.append("".join(c.get("text") or "" for chunk in chunks for c in chunk["choices"]))
    assert all(runs)
    assert runs[1] == runs[2]  # the isolated engine: same seed, same text


async def test_embeddings_cross_as_float32_with_their_token_count(client: EngineClient) -> None:
    vectors, tokens = await client.embed(ENTRIES["plugsky-embed"], ["hello world", "bonjour"])
    assert vectors.shape == (2, 384) and str(vectors.dtype) == "float32"
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    assert tokens > 4
    by_tokens, token_count = await client.embed(ENTRIES["plugsky-embed-minilm"], [[7592, 2088]])
    assert by_tokens.shape == (1, 384) and token_count == 4  # [CLS] and [SEP] added


async def test_an_error_before_the_first_chunk_keeps_its_status(client: EngineClient) -> None:
    body = {"messages": [{"role": "user", "content": "hello " * 5000}]}
    with pytest.raises(ProviderError) as failure:
        async for _ in client.chat_stream(NANO, body):
            pass
    error = failure.value
    assert (error.status, error.code, error.param) == (400, "context_length_exceeded", "messages")
    assert error.message.startswith("This model's maximum context length is 4096 tokens.")


async def test_embedding_errors_keep_their_fields(client: EngineClient) -> None:
    with pytest.raises(ProviderError) as failure:
        await client.embed(ENTRIES["plugsky-embed-minilm"], ["word " * 400])
    assert (failure.value.status, failure.value.code, failure.value.param) == (
        400,
        "context_length_exceeded",
        "input",
    )


async def test_a_model_the_engine_does_not_serve_is_a_404(client: EngineClient) -> None:
    ghost = CatalogEntry(
        id="ghost", kind=Kind.CHAT, routes=(LocalRoute(runtime="llama", weights="x"),),
        context_length=512, description="",
    )  # fmt: skip
    with pytest.raises(ProviderError) as failure:
        async for _ in client.chat_stream(ghost, {"messages": HELLO}):
            pass
    assert (failure.value.status, failure.value.code) == (404, "model_not_found")
    assert client.is_available(NANO) and not client.is_available(ghost)


async def test_closing_a_stream_frees_the_slot_at_once(client: EngineClient) -> None:
    await _idle(client)
    body = {"messages": STORY, "max_tokens": 2000, "timings_per_token": True}
    stream = client.chat_stream(NANO, body)
    counts = []
    async for chunk in stream:
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            counts.append(chunk["timings"]["predicted_n"])
        if len(counts) == 10:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    # Every token counted exactly, one per content chunk: the gateway bills from these.
    assert counts == list(range(counts[0], counts[0] + 10))
    # The slot is free well within the time of a few tokens, not after 2000 of them.
    assert await _idle(client) < 1.0


async def test_cancelling_the_consuming_task_frees_the_slot(client: EngineClient) -> None:
    await _idle(client)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in client.complete_stream(NANO, {"prompt": "Once", "max_tokens": 2000}):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _idle(client) < 1.0


async def test_the_engine_reads_images(client: EngineClient) -> None:
    reading = await client.read_image(invoice_png(), detail="auto")
    assert (reading.format, reading.width, reading.height) == ("PNG", 520, 200)
    assert "INVOICE" in reading.text_lines[0]
    with pytest.raises(ImageError, match="could not be decoded"):
        await client.read_image(b"not an image")


async def test_health_lists_installed_and_loaded_models(client: EngineClient) -> None:
    async for _ in client.chat_stream(NANO, {"messages": HELLO, "max_tokens": 1}):
        pass
    health = await client.health()
    assert health is not None and health["status"] == "ok"
    assert health["models"]["plugsky-nano"] == {"installed": True, "loaded": True}
    assert set(health["models"]) == {entry.id for entry in BUILTIN_MODELS}


async def test_an_engine_that_is_down_answers_503_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = EngineClient(f"unix:{tmp_path}/no-engine.sock")
    started = time.monotonic()
    with pytest.raises(ProviderError) as chat:
        async for _ in client.chat_stream(NANO, {"messages": HELLO}):
            pass
    with pytest.raises(ProviderError) as embed:
        await client.embed(ENTRIES["plugsky-embed"], ["x"])
    assert time.monotonic() - started < 2
    for failure in (chat.value, embed.value):
        assert (failure.status, failure.code, failure.type) == (
            503,
            "engine_unavailable",
            "server_error",
        )
    assert await client.health() is None
    # Until the engine first answers, configured models stay listed (calls get the 503).
    assert client.is_available(NANO)
