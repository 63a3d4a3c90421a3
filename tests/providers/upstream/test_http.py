"""The upstream transport (apps.providers.upstream.http): what it sends, how it fails, and
server-sent events as it reads them."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import aiohttp.resolver
import pytest

from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.http import UpstreamResponse, server_sent_events
from tests.fakes.server import serve

Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _no_error(body: Any) -> tuple[str, str | None, str | None]:
    return "", None, None


async def _posted(base_url: str) -> Any:
    async with http.opened(
        base_url, "chat", body={"a": 1}, headers={}, read_error=_no_error, upstream="Fake"
    ) as response:
        return await http.read_json(response, upstream="Fake")


async def _served(connection: Connection) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_request_asks_for_no_compression() -> None:
    # The body is parsed as it arrives; compressing it would only cost both sides CPU.
    heads: list[bytes] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        await reader.readexactly(8)  # {"a": 1}
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, port = await _served(connection)
    async with server:
        assert await _posted(f"http://127.0.0.1:{port}") == {}
    assert b"\r\ncontent-type: application/json\r\n" in heads[0].lower()
    assert b"accept-encoding" not in heads[0].lower()


async def test_a_connection_that_cannot_be_made_is_not_tried_twice() -> None:
    # Only a reused connection the server had closed is worth a second try; here the TLS
    # handshake fails (the server speaks plain HTTP), as it would again at once.
    connections: list[int] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, port = await _served(connection)
    async with server:
        with pytest.raises(ProviderError) as caught:
            await _posted(f"https://127.0.0.1:{port}")
    assert (caught.value.status, caught.value.code) == (502, "upstream_unavailable")
    assert connections == [1]


async def test_a_name_that_takes_too_long_to_resolve_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The connect timeout covers the name's lookup, so a resolver that hangs fails over fast.
    async def hanging(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(60)

    monkeypatch.setattr(aiohttp.resolver.ThreadedResolver, "resolve", hanging)
    monkeypatch.setattr(http, "CONNECT_TIMEOUT_S", 0.1)

    with pytest.raises(ProviderError) as caught:
        await asyncio.wait_for(_posted("http://upstream.invalid"), timeout=5)
    assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")


async def _empty_object(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive())["more_body"]:
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_a_closed_loops_session_goes_without_an_error(caplog: pytest.LogCaptureFixture) -> None:
    # Each loop has a session; the next loop's first call closes the one of a loop that ended.
    with serve(_empty_object) as base_url, caplog.at_level(logging.ERROR, logger="asyncio"):
        assert asyncio.run(_posted(base_url)) == {}
        assert asyncio.run(_posted(base_url)) == {}
        gc.collect()
    assert caplog.messages == []


class _Arriving:
    """A response body that arrives in the given pieces."""

    def __init__(self, pieces: tuple[bytes, ...]) -> None:
        self._pieces = pieces

    async def pieces(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


async def _events(*pieces: bytes) -> list[tuple[str, str]]:
    response = cast(UpstreamResponse, _Arriving(pieces))
    return [event async for event in server_sent_events(response)]


async def test_events_split_anywhere_across_reads_and_lines_in_either_ending():
    text = (
        'event: delta\r\ndata: {"t": "é ✓"}\r\n\r\n'  # CRLF lines
        ": keep-alive\n\ndata: a\ndata: b\n\ndata: [DONE]"  # LF lines, no final blank line
    )
    raw = text.encode()
    whole = await _events(raw)
    assert whole == [("delta", '{"t": "é ✓"}'), ("", "a\nb"), ("", "[DONE]")]
    # Cut inside the two-byte "é" and the three-byte "✓", and between "\r" and "\n".
    cuts = [raw.index("é".encode()) + 1, raw.index("✓".encode()) + 2, raw.index(b"\r\n\r\n") + 1]
    pieces, start = [], 0
    for cut in sorted(cuts):
        pieces.append(raw[start:cut])
        start = cut
    pieces.append(raw[start:])
    assert await _events(*pieces) == whole
