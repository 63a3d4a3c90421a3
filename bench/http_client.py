"""A lean HTTP/1.1 client for the load generator: raw asyncio, pre-encoded requests.

httpx in one Python process spends ~0.3 ms of CPU per call, and the load generator shares one
core with the mock upstream: at the throughput target (500 calls/s) it would measure itself. This
client does as little as a client can while a response is arriving: it parses the status line,
Content-Length or chunked framing, and notes when each piece of the body arrived; checking
bodies and splitting server-sent events happens after the response (`sse_events`).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def request_bytes(url: str, *, body: object, headers: dict[str, str]) -> bytes:
    """A POST of `body` as JSON, encoded once and sent as many times as needed."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}",
             "Content-Type: application/json", f"Content-Length: {len(payload)}"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class Response:
    status: int = 0
    sent_at: float = 0.0
    done_at: float = 0.0
    body: bytearray = field(default_factory=bytearray)
    # (perf_counter when a piece of the body arrived, length of the body with it): when each
    # server-sent event became readable, found afterwards from its end offset.
    marks: list[tuple[float, int]] = field(default_factory=list)

    @property
    def latency_s(self) -> float:
        return self.done_at - self.sent_at


@dataclass(frozen=True)
class Event:
    arrived_at: float
    data: Any  # the decoded JSON, or the string "[DONE]"


def sse_events(response: Response) -> list[Event]:
    """The `data:` events of a streamed response, each with the time it had fully arrived."""
    ends = [length for _, length in response.marks]
    events = []
    start = 0
    body = bytes(response.body)
    while (end := body.find(b"\n\n", start)) >= 0:
        block = body[start:end]
        start = end + 2
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                payload = line[6:]
                data = "[DONE]" if payload == b"[DONE]" else json.loads(payload)
                arrived = response.marks[bisect.bisect_left(ends, start)][0]
                events.append(Event(arrived_at=arrived, data=data))
    return events


class ConnectionDropped(Exception):
    """The server closed the connection before the response was complete."""


class _Protocol(asyncio.BufferedProtocol):
    """A buffered protocol: the socket is read into one buffer allocated once (a plain
    Protocol gets a new 256 KiB bytes object for every read, a good part of a read's cost)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._read_into = memoryview(bytearray(64 * 1024))
        self._buffer = bytearray()
        self._response: Response | None = None
        self._done: asyncio.Future[Response] | None = None
        self._in_body = False
        self._length: int | None = None  # None: chunked
        self._chunk_left = -1  # chunked: bytes of the current chunk still to come; -1: a size line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionDropped(str(exc or "closed by the server")))

    def send(self, request: bytes) -> asyncio.Future[Response]:
        if self.transport is None:
            raise ConnectionDropped("the connection is closed")
        self._done = asyncio.get_running_loop().create_future()
        self._response = Response(sent_at=time.perf_counter())
        self._in_body, self._length, self._chunk_left = False, None, -1
        self.transport.write(request)
        return self._done

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_into

    def buffer_updated(self, nbytes: int) -> None:
        now = time.perf_counter()
        self._buffer += self._read_into[:nbytes]
        response = self._response
        if response is None:
            return
        if not self._in_body and not self._read_head(response):
            return
        finished = self._read_body(response)
        if not response.marks or response.marks[-1][1] != len(response.body):
            response.marks.append((now, len(response.body)))
        if finished:
            response.done_at = now
            self._response = None
            assert self._done is not None
            self._done.set_result(response)

    def _read_head(self, response: Response) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[: end + 4]
        response.status = int(lines[0].split(b" ", 2)[1])
        self._length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self._length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self._length = None
        self._in_body = True
        return True

    def _read_body(self, response: Response) -> bool:
        """Move what has arrived of the body into `response.body`; True once it is complete."""
        if self._length is not None:
            take = self._length - len(response.body)
            response.body += self._buffer[:take]
            del self._buffer[:take]
            return len(response.body) == self._length
        while True:
            if self._chunk_left < 0:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    return False
                size = int(bytes(self._buffer[:end]).split(b";", 1)[0], 16)
                if size == 0:  # the last chunk, then an empty line (no trailers here)
                    if len(self._buffer) < end + 4:
                        return False
                    del self._buffer[: end + 4]
                    return True
                del self._buffer[: end + 2]
                self._chunk_left = size
            if len(self._buffer) < self._chunk_left + 2:
                return False
            response.body += self._buffer[: self._chunk_left]
            del self._buffer[: self._chunk_left + 2]
            self._chunk_left = -1


class Connection:
    """One kept-alive connection; one request at a time."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, parts.hostname, parts.port)
        return cls(protocol)

    async def send(self, request: bytes) -> Response:
        return await self._protocol.send(request)

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
