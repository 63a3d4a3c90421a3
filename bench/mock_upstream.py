"""A fast mock of an OpenAI-compatible chat server, for the gateway-overhead benchmark.

    python -m bench.mock_upstream     # prints "port <n>" once it listens on 127.0.0.1

`POST /v1/chat/completions` answers a fixed reply in OpenAI's shapes (a `chat.completion`, or
`chat.completion.chunk` events with the usage chunk when `stream_options.include_usage` is
set): every call counts PROMPT_TOKENS prompt tokens and one completion token per content chunk,
ANSWER_TOKENS of them unless `max_tokens`/`max_completion_tokens` is lower. `GET /stats` gives
the calls and tokens served per bearer key, so a benchmark can compare what the mock served
through the gateway with what the gateway billed. A plain ASGI app under uvicorn, bodies
pre-encoded, no delay between chunks: the mock should cost as little as possible, so that what
the benchmark sees beyond the direct calls is the gateway's own work.
"""

from __future__ import annotations

import functools
import json
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

PROMPT_TOKENS = 12
ANSWER_TOKENS = 20
TOKEN_TEXT = "tok "
_ID_PLACEHOLDER = "chatcmpl-000000000000"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Per bearer key: calls, prompt_tokens, completion_tokens served (complete responses only).
_served: defaultdict[str, dict[str, int]] = defaultdict(
    lambda: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
)
_calls = 0


class _Invalid(Exception):
    def __init__(self, message: str, *, param: str | None) -> None:
        super().__init__(message)
        self.param = param


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    route = (scope["method"], scope["path"])
    if route == ("GET", "/stats"):
        await _send_json(send, 200, {"served": _served})
    elif route == ("POST", "/v1/chat/completions"):
        await _chat(scope, receive, send)
    else:
        await _send_error(send, 404, f"Unknown request URL: {route[0]} {route[1]}", param=None)


async def _chat(scope: Scope, receive: Receive, send: Send) -> None:
    key = _bearer_key(scope)
    if not key:
        await _send_error(
            send, 401, "You didn't provide an API key.", param=None, code="invalid_api_key"
        )
        return
    try:
        body = _validated(await _read_body(receive))
    except _Invalid as invalid:
        await _send_error(send, 400, str(invalid), param=invalid.param)
        return
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or ANSWER_TOKENS
    tokens = min(limit, ANSWER_TOKENS)
    finish = "length" if tokens < ANSWER_TOKENS else "stop"
    request_id = _next_id()
    if body.get("stream"):
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _stream_events(body["model"], tokens, finish, with_usage)
        patched = [event.replace(_ID_PLACEHOLDER.encode(), request_id) for event in events]
        await _send_stream(send, patched, request_id=request_id)
    else:
        document = _completion(body["model"], tokens, finish)
        patched_document = document.replace(_ID_PLACEHOLDER.encode(), request_id)
        await _send_bytes(send, 200, patched_document, request_id=request_id)
    served = _served[key]
    served["calls"] += 1
    served["prompt_tokens"] += PROMPT_TOKENS
    served["completion_tokens"] += tokens


def _next_id() -> bytes:
    global _calls
    _calls += 1
    return f"chatcmpl-{_calls:012d}".encode()


def _bearer_key(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization" and value.startswith(b"Bearer "):
            return str(value[7:].decode())
    return ""


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


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


def _usage(tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": tokens,
        "total_tokens": PROMPT_TOKENS + tokens,
    }


# The bodies depend only on (model, tokens, finish, usage): encoded once, the id patched in.
@functools.cache
def _completion(model: str, tokens: int, finish: str) -> bytes:
    message = {"role": "assistant", "content": TOKEN_TEXT * tokens, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    document = {
        "id": _ID_PLACEHOLDER,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _usage(tokens),
    }
    return json.dumps(document).encode()


@functools.cache
def _stream_events(model: str, tokens: int, finish: str, with_usage: bool) -> tuple[bytes, ...]:
    """OpenAI's event order: the role, one chunk per token, the finish reason, then (with
    include_usage) a chunk with no choices and the usage, every earlier chunk carrying
    `usage: null`; then `[DONE]`."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        data: dict[str, Any] = {"id": _ID_PLACEHOLDER, "object": "chat.completion.chunk",
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
    return tuple(events)


async def _send_stream(send: Send, events: list[bytes], *, request_id: bytes) -> None:
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        (b"x-request-id", request_id),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    # One write per event, as a server that generates token by token sends them.
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _send_bytes(send: Send, status: int, body: bytes, *, request_id: bytes = b"") -> None:
    headers = [(b"content-type", b"application/json")]
    if request_id:
        headers.append((b"x-request-id", request_id))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, document: object) -> None:
    await _send_bytes(send, status, json.dumps(document).encode())


async def _send_error(
    send: Send, status: int, message: str, *, param: str | None, code: str | None = None
) -> None:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    await _send_json(send, status, {"error": error})


def main() -> None:
    """Listen on a free loopback port, say which on stdout, serve until terminated."""
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is
    # IPPROTO_TCP, and a socket made with proto 0 passes 0 on to every connection it accepts.
    # Without it, Nagle holds the body behind the headers until the client's delayed ACK,
    # ~40 ms on every call of a kept-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"port {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, http="h11", loop="asyncio"
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
