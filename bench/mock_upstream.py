"""A fast mock of an OpenAI-compatible chat server, for the gateway benchmark.

    python -m bench.mock_upstream [--pace-ms 5]   # prints "port <n>" once it listens

`POST /v1/chat/completions` answers a fixed reply in OpenAI's shapes (a `chat.completion`, or
`chat.completion.chunk` events with the usage chunk when `stream_options.include_usage` is
set): every call counts PROMPT_TOKENS prompt tokens and one completion token per content chunk,
ANSWER_TOKENS of them unless `max_tokens`/`max_completion_tokens` is lower. `GET /stats` gives
the calls and tokens served per bearer key (complete responses only), so a benchmark can compare
what the mock served through a gateway with what the gateway billed.

With `--pace-ms`, a stream sends its content chunks that many milliseconds apart (a slow
upstream, as a model generating tokens is); without it, all at once.

The mock must cost as little as possible, so that what a benchmark sees beyond the direct calls
is the gateway's own work, and so that the direct calls can go far beyond the gateway's
throughput target on the one core that the mock shares with the load generator. So it is a bare
asyncio protocol speaking just the HTTP/1.1 its clients use (keep-alive, Content-Length request
bodies, chunked streamed responses) with pre-encoded bodies; uvicorn on h11 cost ~0.75 ms of CPU
per call, which capped the direct calls near 300 calls/s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import socket
import time
from collections import defaultdict
from typing import Any

PROMPT_TOKENS = 12
ANSWER_TOKENS = 20
TOKEN_TEXT = "tok "
_ID_PLACEHOLDER = b"chatcmpl-000000000000"
_MAX_HEAD_BYTES = 64 * 1024

# Per bearer key: calls, prompt_tokens, completion_tokens served (complete responses only).
_served: defaultdict[str, dict[str, int]] = defaultdict(
    lambda: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
)
_calls = 0


class _Invalid(Exception):
    def __init__(self, message: str, *, param: str | None) -> None:
        super().__init__(message)
        self.param = param


class _Request:
    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[bytes, bytes], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered one after another, in order (a request
    that arrives while a paced stream is still going waits in the buffer)."""

    def __init__(self, pacer: _Pacer | None) -> None:
        self._pacer = pacer
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._is_busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None  # a paced stream cut short ends at its next tick, not served

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._answer_buffered()

    def _answer_buffered(self) -> None:
        while not self._is_busy and self._transport is not None:
            request = self._next_request()
            if request is None:
                return
            self._answer(request)

    def _next_request(self) -> _Request | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD_BYTES:
                self._reply_and_close(431, "Request header fields too large.")
            return None
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        try:
            method, path, _ = lines[0].decode("latin-1").split(" ", 2)
        except ValueError:
            self._reply_and_close(400, "Malformed request line.")
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"transfer-encoding" in headers:
            self._reply_and_close(411, "Send the body with a Content-Length.")
            return None
        length = int(headers.get(b"content-length", b"0"))
        if len(self._buffer) < end + 4 + length:
            return None
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        return _Request(method, path.split("?", 1)[0], headers, body)

    def _answer(self, request: _Request) -> None:
        route = (request.method, request.path)
        if route == ("GET", "/stats"):
            self._write(_response(200, json.dumps({"served": _served}).encode()))
        elif route == ("POST", "/v1/chat/completions"):
            self._chat(request)
        else:
            self._write(_error(404, f"Unknown request URL: {route[0]} {route[1]}", param=None))

    def _chat(self, request: _Request) -> None:
        key = _bearer_key(request.headers)
        if not key:
            self._write(_error(401, "You didn't provide an API key.", code="invalid_api_key"))
            return
        try:
            body = _validated(request.body)
        except _Invalid as invalid:
            self._write(_error(400, str(invalid), param=invalid.param))
            return
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or ANSWER_TOKENS
        tokens = min(limit, ANSWER_TOKENS)
        finish = "length" if tokens < ANSWER_TOKENS else "stop"
        request_id = _next_id()
        model = body["model"]
        if not body.get("stream"):
            document = _completion(model, tokens, finish).replace(_ID_PLACEHOLDER, request_id)
            self._write(_response(200, document, request_id=request_id))
            _count(key, tokens)
            return
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _framed_events(model, tokens, finish, with_usage)
        frames = [event.replace(_ID_PLACEHOLDER, request_id) for event in events]
        head = _head(200, b"text/event-stream", None, request_id) + frames[0]
        if self._pacer is None:
            # One write per event, as a server that generates token by token sends them.
            for frame in (head, *frames[1:]):
                self._write(frame)
            _count(key, tokens)
            return
        self._is_busy = True
        self._write(head)
        self._pacer.add(_PacedStream(self, frames, tokens, key))

    def paced_stream_ended(self) -> None:
        self._is_busy = False
        self._answer_buffered()

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _reply_and_close(self, status: int, message: str) -> None:
        self._write(_error(status, message, param=None))
        if self._transport is not None:
            self._transport.close()
        self._buffer.clear()


class _PacedStream:
    """A stream sent one content chunk per tick of the pacer."""

    def __init__(self, connection: _Connection, frames: list[bytes], tokens: int, key: str):
        self._connection, self._frames, self._tokens, self._key = connection, frames, tokens, key
        self._next = 1  # frames[1..tokens] are the content chunks

    def advance(self) -> bool:
        """Send the next content chunk (after the last one, the finish, usage and [DONE]
        events with it); False once the stream has ended or its client has gone."""
        if not self._connection.is_open:
            return False
        self._connection._write(self._frames[self._next])
        self._next += 1
        if self._next <= self._tokens:
            return True
        self._connection._write(b"".join(self._frames[self._next :]))
        _count(self._key, self._tokens)
        self._connection.paced_stream_ended()
        return False


class _Pacer:
    """One clock for every paced stream of the process: each tick, one pace after the last,
    sends every stream its next chunk. (A timer per chunk of each stream cost the mock more than
    its writes: 256 streams at 5 ms are 51,200 chunks a second.)"""

    def __init__(self, pace_s: float) -> None:
        self._pace_s = pace_s
        self._streams: list[_PacedStream] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def add(self, stream: _PacedStream) -> None:
        self._streams.append(stream)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._due = loop.time() + self._pace_s
            self._timer = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        streams, self._streams = self._streams, []
        # Streams added during the tick (a request waiting behind a stream that just ended)
        # land in the new list and start at the next tick.
        self._streams += [stream for stream in streams if stream.advance()]
        if not self._streams:
            self._timer = None
            return
        loop = asyncio.get_running_loop()
        # On a fixed schedule; once behind it, no burst of ticks to catch up (never two ticks
        # closer than half a pace).
        self._due = max(self._due + self._pace_s, loop.time() + self._pace_s / 2)
        self._timer = loop.call_at(self._due, self._tick)


def _count(key: str, tokens: int) -> None:
    served = _served[key]
    served["calls"] += 1
    served["prompt_tokens"] += PROMPT_TOKENS
    served["completion_tokens"] += tokens


def _next_id() -> bytes:
    global _calls
    _calls += 1
    return f"chatcmpl-{_calls:012d}".encode()


def _bearer_key(headers: dict[bytes, bytes]) -> str:
    value = headers.get(b"authorization", b"")
    return value[7:].decode() if value.startswith(b"Bearer ") else ""


def _validated(raw: bytes) -> dict[str, Any]:
    """The request body, checked as OpenAI's API checks the fields this mock reads."""
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise _Invalid(f"We could not parse the JSON body: {error}", param=None) from error
    if not isinstance(body, dict):
        raise _Invalid("The request body must be a JSON object.", param=None)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _Invalid("you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("'messages' must be a non-empty array.", param="messages")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise _Invalid("Each message must be an object with a 'role'.", param="messages")
    for name in ("max_tokens", "max_completion_tokens"):
        limit = body.get(name)
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise _Invalid(f"Invalid '{name}': must be an integer of 1 or more.", param=name)
    return body


_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            411: b"Length Required", 431: b"Request Header Fields Too Large"}  # fmt: skip


def _head(status: int, content_type: bytes, length: int | None, request_id: bytes) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS[status]), b"content-type: " + content_type]
    if length is None:
        lines += [b"transfer-encoding: chunked", b"cache-control: no-cache"]
    else:
        lines.append(b"content-length: %d" % length)
    if request_id:
        lines.append(b"x-request-id: " + request_id)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _response(status: int, body: bytes, *, request_id: bytes = b"") -> bytes:
    return _head(status, b"application/json", len(body), request_id) + body


def _error(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return _response(status, json.dumps({"error": error}).encode())


def _usage(tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": tokens,
        "total_tokens": PROMPT_TOKENS + tokens,
    }


# The bodies depend only on (model, tokens, finish, usage): encoded once, the id patched in
# (the placeholder has the id's length, so lengths and chunk sizes stay right).
@functools.cache
def _completion(model: str, tokens: int, finish: str) -> bytes:
    message = {"role": "assistant", "content": TOKEN_TEXT * tokens, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    document = {
        "id": _ID_PLACEHOLDER.decode(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _usage(tokens),
    }
    return json.dumps(document).encode()


@functools.cache
def _framed_events(model: str, tokens: int, finish: str, with_usage: bool) -> tuple[bytes, ...]:
    """OpenAI's event order, each event one HTTP chunk: the role, one chunk per token, then the
    finish reason, (with include_usage) a chunk with no choices and the usage, every earlier
    chunk carrying `usage: null`, then `[DONE]` and the end of the chunked body. So item i
    (1 ≤ i ≤ tokens) is the i-th content chunk."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        data: dict[str, Any] = {"id": _ID_PLACEHOLDER.decode(), "object": "chat.completion.chunk",
                                "created": created, "model": model, "choices": choices}  # fmt: skip
        if with_usage:
            data["usage"] = usage
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    def delta(content: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}]

    events = [chunk(delta({"role": "assistant", "content": ""}), None)]
    events += [chunk(delta({"content": TOKEN_TEXT}), None) for _ in range(tokens)]
    events.append(chunk(delta({}, finish), None))
    if with_usage:
        events.append(chunk([], _usage(tokens)))
    events.append(b"data: [DONE]\n\n")
    framed = [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
    return (*framed, b"0\r\n\r\n")


async def _serve(sock: socket.socket, pace_s: float) -> None:
    loop = asyncio.get_running_loop()
    pacer = _Pacer(pace_s) if pace_s > 0 else None
    server = await loop.create_server(lambda: _Connection(pacer), sock=sock, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Listen on a free loopback port, say which on stdout, serve until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pace-ms", type=float, default=0.0, help="delay between chunks")
    arguments = parser.parse_args()
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is
    # IPPROTO_TCP, and a socket made with proto 0 passes 0 on to every connection it accepts.
    # Without it, Nagle holds a response's second write behind the first until the client's
    # delayed ACK, ~40 ms on every call of a kept-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)  # before saying the port: a client may connect at once
    print(f"port {sock.getsockname()[1]}", flush=True)
    asyncio.run(_serve(sock, arguments.pace_ms / 1000))


if __name__ == "__main__":
    main()
