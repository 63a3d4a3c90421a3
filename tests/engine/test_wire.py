"""The engine's HTTP protocol on a loopback server, with a scripted provider in place of models:
errors after the first chunk, streams cut short, and what the server does when a client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn

from apps.catalog.builtin import BUILTIN_MODELS
from apps.engine.server import EngineApp
from apps.providers import engine_wire as wire
from apps.providers.engine_client import EngineClient
from apps.providers.errors import ProviderError

NANO = next(entry for entry in BUILTIN_MODELS if entry.id == "plugsky-nano")


class ScriptedProvider:
    """Yields `chunks`, then raises `error` (if any); records whether its stream was closed."""

    def __init__(self, chunks: list[dict[str, Any]], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.closed = asyncio.Event()
        self.endless = False

    async def chat_stream(
        self, entry: Any, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            for chunk in self.chunks:
                yield chunk
            while self.endless:
                await asyncio.sleep(0.01)
                yield {"choices": [{"delta": {"content": "."}}]}
            if self.error is not None:
                raise self.error
        finally:
            self.closed.set()

    def is_available(self, entry: Any) -> bool:
        return True

    def is_loaded(self, entry: Any) -> bool:
        return False

    def running(self) -> int:
        return 0


async def _serve(app: Any, path: str) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, uds=path, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event for it)
        await asyncio.sleep(0.01)
    return server, task


@pytest.fixture
def socket_path(tmp_path: Any) -> Iterator[str]:
    yield str(tmp_path / "engine.sock")


async def _engine(provider: ScriptedProvider, path: str) -> tuple[uvicorn.Server, Any]:
    app = EngineApp(provider, {NANO.id: NANO})  # type: ignore[arg-type]
    return await _serve(app, path)


async def test_an_error_after_the_first_chunk_arrives_after_it(socket_path: str) -> None:
    failure = ProviderError("llama.cpp failed", status=500, code="engine_error", param=None)
    provider = ScriptedProvider([{"n": 1}, {"n": 2}], failure)
    server, task = await _engine(provider, socket_path)
    try:
        received = []
        with pytest.raises(ProviderError) as raised:
            async for chunk in EngineClient(f"unix:{socket_path}").chat_stream(NANO, {}):
                received.append(chunk)
        assert received == [{"n": 1}, {"n": 2}]
        assert (raised.value.status, raised.value.code, raised.value.message) == (
            500,
            "engine_error",
            "llama.cpp failed",
        )
    finally:
        server.should_exit = True
        await task


async def test_an_error_before_the_first_chunk_is_the_http_status(socket_path: str) -> None:
    failure = ProviderError("too long", status=400, code="context_length_exceeded", param="x")
    server, task = await _engine(ScriptedProvider([], failure), socket_path)
    try:
        client = EngineClient(f"unix:{socket_path}")
        response = await client._client().post(wire.CHAT_PATH, json={"model": NANO.id, "body": {}})
        assert response.status_code == 400
        assert response.json() == {
            "error": {
                "message": "too long",
                "status": 400,
                "code": "context_length_exceeded",
                "param": "x",
            }
        }
    finally:
        server.should_exit = True
        await task


async def test_a_stream_cut_short_is_a_502_not_a_clean_end(socket_path: str) -> None:
    async def cut_short(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": wire.line({"chunk": {"n": 1}})})

    server, task = await _serve(cut_short, socket_path)
    try:
        received = []
        with pytest.raises(ProviderError) as raised:
            async for chunk in EngineClient(f"unix:{socket_path}").chat_stream(NANO, {}):
                received.append(chunk)
        assert received == [{"n": 1}]
        assert (raised.value.status, raised.value.code) == (502, "engine_error")
    finally:
        server.should_exit = True
        await task


async def test_a_client_that_leaves_closes_the_providers_stream(socket_path: str) -> None:
    provider = ScriptedProvider([{"n": 1}])
    provider.endless = True
    server, task = await _engine(provider, socket_path)
    try:
        stream = EngineClient(f"unix:{socket_path}").chat_stream(NANO, {})
        assert await anext(stream) == {"n": 1}
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(provider.closed.wait(), timeout=2)
    finally:
        server.should_exit = True
        await task


def test_engine_urls() -> None:
    assert wire.engine_address("unix:///srv/e.sock").socket_path == "/srv/e.sock"
    assert wire.engine_address("unix:/srv/e.sock").socket_path == "/srv/e.sock"
    tcp = wire.engine_address("http://10.0.0.5:8001/")
    assert (tcp.host, tcp.port, tcp.base_url) == ("10.0.0.5", 8001, "http://10.0.0.5:8001")
    with pytest.raises(ValueError):
        wire.engine_address("https://engine")
