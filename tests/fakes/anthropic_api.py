"""A loopback fake of Anthropic's Messages API (`POST /v1/messages`, streamed), an ASGI app.

Written from Anthropic's API reference: it checks the headers (`x-api-key`,
`anthropic-version`, a JSON body) and the body as the real API does (required `max_tokens`,
turns alternating from a user's, each `tool_use` answered by a `tool_result` at the head of the
next user turn, image sources, tools and tool_choice), answers a bad request with Anthropic's
error body, and streams the scripted `Reply` in Anthropic's order: message_start (input usage),
ping, each content block's start / deltas / stop, message_delta (stop_reason, output usage),
message_stop. Only streamed calls are served: the provider under test never asks for others.
`POST /v1/messages/count_tokens` takes the prompt's fields only and answers
`{"input_tokens": n}` with the reply's input_tokens.

Faults (`Reply.fault`): "500", "529", "429" (with `retry_after`), "timeout" (no answer for
`delay_s`), "cut" (the connection dropped mid-stream), "truncated" (the stream ends cleanly
before message_stop), "malformed" (an event that is not JSON), "misshapen" (JSON without the
fields its type has), "error_event" (an overloaded
`error` event mid-stream). Every request is kept in `requests`, a stream the client left in
`disconnected`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2023-06-01"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BLOCK_TYPES = {"user": {"text", "image", "tool_result"}, "assistant": {"text", "tool_use"}}
_BROKEN_STREAMS = ("cut", "truncated", "malformed", "misshapen")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class ToolUse:
    id: str
    name: str
    arguments: str  # streamed as input_json_delta pieces, as Anthropic does


@dataclass
class Reply:
    """What the fake answers; `pieces` splits text and arguments into deltas of that size."""

    text: str = ""
    tool_uses: list[ToolUse] = field(default_factory=list)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int = 12
    output_tokens: int = 5
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    model: str = "claude-fake-1"
    message_id: str = "msg_01FakeMessage"
    pieces: int = 4
    fault: str | None = None
    retry_after: str | None = None
    delay_s: float = 0.0  # before each delta ("timeout": before the answer)


class BadRequest(Exception):
    pass


class FakeAnthropic:
    def __init__(self, *, api_key: str = "sk-ant-fake", request_id: str = "req_01Fake") -> None:
        self.api_key = api_key
        self.base_url = ""  # set by whoever serves it
        self.request_id = request_id
        self.reply = Reply()
        self.requests: list[dict[str, Any]] = []  # bodies as received, valid or not
        self.headers: list[dict[str, str]] = []
        self.disconnected = threading.Event()
        self.events_sent = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = await _read_body(receive)
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.headers.append(headers)
        path = scope["path"]
        if scope["method"] != "POST" or path not in ("/v1/messages", COUNT_TOKENS_PATH):
            await _error(send, 404, f"Not found: {scope['method']} {path}")
            return
        if headers.get("x-api-key") != self.api_key:
            await _error(send, 401, "invalid x-api-key")
            return
        try:
            body = _checked_headers_and_body(headers, raw)
            self.requests.append(body)
            check_count_body(body) if path == COUNT_TOKENS_PATH else check_body(body)
        except BadRequest as failure:
            await _error(send, 400, str(failure), request_id=self.request_id)
            return
        if path == COUNT_TOKENS_PATH:
            await self._count(send)
        else:
            await self._answer(send, receive)

    async def _count(self, send: Any) -> None:
        """`{"input_tokens": n}`: the reply's input_tokens, what the same call would report."""
        if self.reply.fault in ("500", "529", "429"):
            await _error(send, int(self.reply.fault), "scripted failure")
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"request-id", self.request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        answer = {"input_tokens": self.reply.input_tokens}
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    async def _answer(self, send: Any, receive: Any) -> None:
        reply = self.reply
        if reply.fault == "timeout":
            await asyncio.sleep(reply.delay_s)
        if reply.fault in ("500", "529", "429"):
            extra = [(b"retry-after", reply.retry_after.encode())] if reply.retry_after else []
            await _error(send, int(reply.fault), "scripted failure", extra_headers=extra)
            return
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            await self._stream(send, reply)
        finally:
            watcher.cancel()

    async def _watch(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()

    async def _stream(self, send: Any, reply: Reply) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"request-id", self.request_id.encode()),
                ],
            }
        )
        events = stream_events(reply)
        cut_at = len(events) // 2
        for position, (name, data) in enumerate(events):
            if self.disconnected.is_set():
                return
            if position == cut_at and reply.fault in _BROKEN_STREAMS:
                await self._fault(send, reply.fault)
                return
            if position == cut_at and reply.fault == "error_event":
                name, data = "error", _error_body("overloaded_error", "Overloaded")
            if reply.delay_s and name == "content_block_delta":
                await asyncio.sleep(reply.delay_s)
            await _send_event(send, name, json.dumps(data))
            self.events_sent += 1
            if name == "error":
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _fault(self, send: Any, fault: str) -> None:
        if fault == "malformed":
            await _send_event(send, "content_block_delta", '{"type": "content_block_delta", ')
        if fault == "misshapen":
            await _send_event(send, "content_block_delta", '{"type": "content_block_delta"}')
        if fault == "cut":
            # Raising after the response started makes the server drop the connection without
            # the chunked body's end: what a reset or a crashed upstream looks like.
            raise ConnectionAbortedError("scripted cut")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- The stream, in Anthropic's order -------------------------------------------------------


def stream_events(reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    usage = {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": reply.cache_creation_input_tokens,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
        "output_tokens": 1,
    }
    message = {
        "id": reply.message_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": reply.model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    events = [("message_start", {"type": "message_start", "message": message})]
    events.append(("ping", {"type": "ping"}))
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if reply.text:
        deltas = [{"type": "text_delta", "text": part} for part in _split(reply.text, reply)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for call in reply.tool_uses:
        start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        parts = ["", *_split(call.arguments, reply)]  # Anthropic opens with an empty piece
        blocks.append((start, [{"type": "input_json_delta", "partial_json": p} for p in parts]))
    for index, (start, deltas) in enumerate(blocks):
        opening = {"type": "content_block_start", "index": index, "content_block": start}
        events.append(("content_block_start", opening))
        for delta in deltas:
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _split(text: str, reply: Reply) -> list[str]:
    return [text[start : start + reply.pieces] for start in range(0, len(text), reply.pieces)]


# --- Checks of the request, as the Messages API makes them ---------------------------------


def _checked_headers_and_body(headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    if headers.get("anthropic-version") != API_VERSION:
        raise BadRequest(f"anthropic-version: expected {API_VERSION!r}")
    if not headers.get("content-type", "").startswith("application/json"):
        raise BadRequest("content-type must be application/json")
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be an object.")
    return body


def check_count_body(body: dict[str, Any]) -> None:
    """Raise BadRequest where count_tokens would answer 400: the prompt's fields only (no
    max_tokens, no sampling), checked as a Messages body's are."""
    _require(isinstance(body.get("model"), str) and body["model"], "model: Field required")
    known = {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
    extra = sorted(set(body) - known)
    _require(not extra, f"{', '.join(extra)}: Extra inputs are not permitted")
    _check_system(body.get("system"))
    names = _check_tools(body.get("tools"), body.get("tool_choice"))
    _check_messages(body.get("messages"), tool_names=names)


def check_body(body: dict[str, Any]) -> None:
    """Raise BadRequest where the Messages API would answer 400."""
    _require(isinstance(body.get("model"), str) and body["model"], "model: Field required")
    max_tokens = body.get("max_tokens")
    _require(
        type(max_tokens) is int and max_tokens >= 1,
        "max_tokens: Field required (an integer >= 1)",
    )
    _require(body.get("stream") is True, "this fake serves streamed calls only")
    known = {
        "model",
        "max_tokens",
        "messages",
        "stream",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "tools",
        "tool_choice",
    }
    extra = sorted(set(body) - known)
    _require(not extra, f"{', '.join(extra)}: Extra inputs are not permitted")
    _check_sampling(body)
    _check_system(body.get("system"))
    names = _check_tools(body.get("tools"), body.get("tool_choice"))
    _check_messages(body.get("messages"), tool_names=names)


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise BadRequest(message)


def _check_sampling(body: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        if name in body:
            value = body[name]
            _require(
                isinstance(value, int | float) and 0 <= value <= 1,
                f"{name}: Input should be less than or equal to 1",
            )
    stops = body.get("stop_sequences", [])
    _require(
        isinstance(stops, list) and all(isinstance(s, str) and s.strip() for s in stops),
        "stop_sequences: each stop sequence must contain non-whitespace",
    )
    metadata = body.get("metadata", {})
    _require(
        isinstance(metadata, dict) and set(metadata) <= {"user_id"},
        "metadata: only user_id is permitted",
    )


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    _require(isinstance(system, list), "system: Input should be a string or a list of blocks")
    for block in system:
        _check_text(block, "system")


def _check_text(block: Any, where: str) -> None:
    _require(
        isinstance(block, dict) and block.get("type") == "text", f"{where}: expected a text block"
    )
    _require(
        isinstance(block.get("text"), str) and block["text"],
        f"{where}: text content blocks must be non-empty",
    )


def _check_tools(tools: Any, choice: Any) -> set[str]:
    if tools is None:
        _require(choice is None, "tool_choice may only be specified while providing tools")
        return set()
    _require(isinstance(tools, list), "tools: Input should be a list")
    names = set()
    for index, tool in enumerate(tools):
        _require(
            TOOL_NAME.match(str(tool.get("name", ""))), f"tools.{index}.name: String should match"
        )
        schema = tool.get("input_schema")
        _require(
            isinstance(schema, dict) and schema.get("type") == "object",
            f"tools.{index}.input_schema: type must be 'object'",
        )
        _require(
            set(tool) <= {"name", "description", "input_schema", "cache_control"},
            f"tools.{index}: Extra inputs are not permitted",
        )
        names.add(tool["name"])
    if choice is not None:
        _check_tool_choice(choice, names)
    return names


def _check_tool_choice(choice: Any, names: set[str]) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    _require(kind in ("auto", "any", "tool", "none"), "tool_choice.type: invalid")
    if kind == "tool":
        _require(choice.get("name") in names, "tool_choice.name: no tool of that name")
    if kind == "none":
        _require(set(choice) == {"type"}, "tool_choice.none: Extra inputs are not permitted")
    allowed = {"type", "name", "disable_parallel_tool_use"}
    _require(set(choice) <= allowed, "tool_choice: Extra inputs are not permitted")


def _check_messages(messages: Any, *, tool_names: set[str]) -> None:
    _require(isinstance(messages, list) and messages, "messages: at least one message is required")
    _require(messages[0].get("role") == "user", "messages: first message must use the user role")
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    for index, message in enumerate(messages):
        role = message.get("role")
        _require(role in BLOCK_TYPES, f"messages.{index}.role: Input should be user or assistant")
        if index:
            _require(
                role != messages[index - 1]["role"],
                "messages: roles must alternate between user and assistant",
            )
        blocks = _blocks(message.get("content"), index)
        for position, block in enumerate(blocks):
            _check_block(block, f"messages.{index}.content.{position}", role=role)
        if role == "user":
            _check_results(blocks, pending, index)
            pending = set()
        else:
            pending = {block["id"] for block in blocks if block["type"] == "tool_use"}
            for block in blocks:
                if block["type"] == "tool_use":
                    _require(block["name"] in tool_names, f"messages.{index}: unknown tool")
    # A tool_use may end the conversation only if it is the assistant's last (prefill) turn.


def _blocks(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        _require(content, f"messages.{index}: all messages must have non-empty content")
        return [{"type": "text", "text": content}]
    _require(
        isinstance(content, list) and content,
        f"messages.{index}: all messages must have non-empty content",
    )
    return content


def _check_results(blocks: list[dict[str, Any]], pending: set[str], index: int) -> None:
    results = [block["tool_use_id"] for block in blocks if block["type"] == "tool_result"]
    leading = [block["type"] for block in blocks[: len(results)]]
    _require(
        set(leading) <= {"tool_result"},
        f"messages.{index}: tool_result blocks must come first in the user message",
    )
    _require(
        set(results) == pending,
        f"messages.{index}: each tool_use must have a tool_result immediately after it, "
        "and each tool_result must answer a tool_use of the previous message",
    )


def _check_block(block: Any, where: str, *, role: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    _require(kind in BLOCK_TYPES[role], f"{where}.type: {kind!r} is not permitted here")
    if kind == "text":
        _check_text(block, where)
    elif kind == "image":
        _check_image(block.get("source"), where)
    elif kind == "tool_use":
        _require(
            isinstance(block.get("id"), str) and isinstance(block.get("input"), dict),
            f"{where}: a tool_use needs an id and an object input",
        )
    else:
        content = block.get("content")
        _require(isinstance(block.get("tool_use_id"), str), f"{where}.tool_use_id: required")
        if isinstance(content, list):
            for position, item in enumerate(content):
                _check_block(item, f"{where}.content.{position}", role="user")
        else:
            _require(isinstance(content, str), f"{where}.content: a string or blocks")


def _check_image(source: Any, where: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url":
        _require(
            str(source.get("url", "")).startswith(("http://", "https://")), f"{where}: bad url"
        )
        return
    _require(kind == "base64", f"{where}.source.type: expected base64 or url")
    _require(source.get("media_type") in IMAGE_TYPES, f"{where}.source.media_type: invalid")
    try:
        base64.b64decode(source.get("data", ""), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}.source.data: invalid base64") from None


# --- ASGI helpers ---------------------------------------------------------------------------


async def _read_body(receive: Any) -> bytes:
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            return raw


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


async def _error(
    send: Any,
    status: int,
    message: str,
    *,
    request_id: str = "req_01Fake",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = {**_error_body(ERROR_TYPES[status], message), "request_id": request_id}
    headers = [(b"content-type", b"application/json"), (b"request-id", request_id.encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _send_event(send: Any, name: str, data: str) -> None:
    chunk = f"event: {name}\ndata: {data}\n\n".encode()
    await send({"type": "http.response.body", "body": chunk, "more_body": True})
