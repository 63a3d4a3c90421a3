"""A loopback fake of OpenAI's API (chat completions, legacy completions, embeddings), written
from OpenAI's API reference, to run with `tests.fakes.server.serve`:

    fake = FakeOpenAI(api_key="sk-test")
    fake.reply = Stream(texts=("Hel", "lo"))  # what every call answers until changed
    with serve(fake) as base_url:
        ...  # OpenAIProvider(..., base_url=base_url + "/v1", api_key="sk-test")
    fake.received[-1].body  # what the code under test sent

It checks what OpenAI checks (a Bearer key, `model`, `messages`/`prompt`/`input`) with OpenAI's
error bodies, and what Plugsky must always send upstream: `stream: true` with
`stream_options.include_usage` (a 400 naming `stream_options` otherwise). A stream goes in
OpenAI's order: a first chunk with the assistant role, content chunks, a closing chunk with the
finish reason, a usage chunk with empty `choices` (every other chunk has `"usage": null`), then
`data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUEST_ID = "req_7f3a9c1e2b4d4e5f8a6b0c1d2e3f4a5b"
COMPLETION_ID = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
CREATED = 1741569952
SYSTEM_FINGERPRINT = "fp_eb9dce56a8"


def openai_usage(
    *, prompt: int, completion: int, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """A `usage` object in the reference's full shape."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass
class Stream:
    """A streamed answer. `tool_call` is (name, arguments pieces) streamed after `texts`.

    Faults: `cut_after` chunks, the connection drops mid-body; `end_without_done`, the body
    ends cleanly but no `[DONE]` comes; `malformed_after` chunks, a line that is not JSON;
    `error_after` chunks, an error object in the stream (as OpenAI reports a failure after the
    200); `delay_s` before the first byte; `endless`, chunks until the client goes away.
    """

    texts: tuple[str, ...] = ("Hello", " there", "!")
    tool_call: tuple[str, tuple[str, ...]] | None = None
    finish_reason: str = "stop"
    usage: dict[str, Any] = field(default_factory=lambda: openai_usage(prompt=19, completion=3))
    model: str = "gpt-4o-mini-2024-07-18"
    cut_after: int | None = None
    end_without_done: bool = False
    malformed_after: int | None = None
    error_after: int | None = None
    delay_s: float = 0.0
    endless: bool = False


@dataclass
class Error:
    """An error answer: OpenAI's `{"error": {...}}` body with the given status and headers."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class EmbeddingsReply:
    vectors: tuple[tuple[float, ...], ...] = ((0.25, -0.5, 1.0),)
    prompt_tokens: int = 5
    model: str = "text-embedding-3-small"
    force_base64: bool = False  # answer in base64 even when floats were asked


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    client_port: int = 0  # the caller's side of the TCP connection: the same port, the same one


class FakeOpenAI:
    """The ASGI app. `api_key=None` is a server without auth: it records what it gets."""

    def __init__(self, *, api_key: str | None = "sk-test") -> None:
        self.api_key = api_key
        self.reply: Stream | Error | EmbeddingsReply = Stream()
        self.received: list[Received] = []
        self.disconnected = threading.Event()  # set when a client leaves an endless stream

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = await _read_body(receive)
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        body = _json_or_none(raw)
        client_port = scope["client"][1] if scope.get("client") else 0
        self.received.append(
            Received(path=scope["path"], headers=headers, body=body, client_port=client_port)
        )
        refusal = self._refusal(scope["path"], headers, body)
        if refusal is not None:
            await _send_error(send, refusal)
        elif isinstance(self.reply, Error):
            await _send_error(send, self.reply)
        elif scope["path"] == "/v1/embeddings":
            await _send_embeddings(send, self.reply, body)
        else:
            await self._stream(send, receive, body, chat=scope["path"] == "/v1/chat/completions")

    def _refusal(self, path: str, headers: dict[str, str], body: Any) -> Error | None:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return Error(
                401,
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        if path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            return Error(404, f"Invalid URL (POST {path})")
        if not isinstance(body, dict):
            return Error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str):
            return Error(400, "you must provide a model parameter")
        required = {"/v1/chat/completions": "messages", "/v1/completions": "prompt"}
        name = required.get(path, "input")
        if not body.get(name):
            return Error(
                400,
                f"Missing required parameter: '{name}'.",
                param=name,
                code="missing_required_parameter",
            )
        if path != "/v1/embeddings" and not (
            body.get("stream") is True
            and (body.get("stream_options") or {}).get("include_usage") is True
        ):
            return Error(400, "Plugsky must stream with usage.", param="stream_options")
        return None

    async def _stream(self, send: Any, receive: Any, body: dict[str, Any], *, chat: bool) -> None:
        reply = self.reply
        assert isinstance(reply, Stream)
        await asyncio.sleep(reply.delay_s)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"x-request-id", REQUEST_ID.encode()),
                ],
            }
        )
        if reply.endless:
            await self._until_disconnect(send, receive, reply, chat=chat)
            return
        chunks = _chunks(reply, n=int(body.get("n") or 1), chat=chat)
        for sent, chunk in enumerate(chunks):
            if sent == reply.cut_after:
                return  # uvicorn drops the connection: the chunked body never ends
            if sent == reply.error_after:
                chunk = {"error": {"message": "The model overloaded.", "type": "server_error",
                                   "param": None, "code": None}}  # fmt: skip
            line = "{not json" if sent == reply.malformed_after else json.dumps(chunk)
            await _send_event(send, line)
        if not reply.end_without_done:
            await _send_event(send, "[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _until_disconnect(
        self, send: Any, receive: Any, reply: Stream, *, chat: bool
    ) -> None:
        leaving = asyncio.ensure_future(receive())
        piece = _text_choice("tick", index=0, chat=chat)
        while not leaving.done():
            await _send_event(send, json.dumps(_envelope(reply, [piece], chat=chat)))
            await asyncio.wait({leaving}, timeout=0.01)
        if leaving.result()["type"] == "http.disconnect":
            self.disconnected.set()


def _chunks(reply: Stream, *, n: int, chat: bool) -> list[dict[str, Any]]:
    """The stream of `reply` for `n` choices, in the reference's order."""
    choices: list[list[dict[str, Any]]] = []
    if chat:
        first = {"role": "assistant", "content": "", "refusal": None}
        choices.append([_choice(first, index=index) for index in range(n)])
    for text in reply.texts:
        choices.append([_text_choice(text, index=index, chat=chat) for index in range(n)])
    if chat and reply.tool_call is not None:
        choices.extend(_tool_call_choices(reply.tool_call, n=n))
    finish = {"finish_reason": reply.finish_reason}
    last = {} if chat else {"text": ""}
    choices.append([{**_choice(last, index=index, chat=chat), **finish} for index in range(n)])
    chunks = [_envelope(reply, each, chat=chat) for each in choices]
    return [*chunks, {**_envelope(reply, [], chat=chat), "usage": reply.usage}]


def _tool_call_choices(
    tool_call: tuple[str, tuple[str, ...]], *, n: int
) -> list[list[dict[str, Any]]]:
    name, pieces = tool_call
    opening = {
        "index": 0,
        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    deltas = [{"tool_calls": [opening]}]
    deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces]
    return [[_choice(delta, index=index) for index in range(n)] for delta in deltas]


def _text_choice(text: str, *, index: int, chat: bool) -> dict[str, Any]:
    return _choice({"content": text} if chat else {"text": text}, index=index, chat=chat)


def _choice(content: dict[str, Any], *, index: int, chat: bool = True) -> dict[str, Any]:
    if chat:
        return {"index": index, "delta": content, "logprobs": None, "finish_reason": None}
    return {"index": index, **content, "logprobs": None, "finish_reason": None}


def _envelope(reply: Stream, choices: list[dict[str, Any]], *, chat: bool) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "id": COMPLETION_ID if chat else "cmpl-" + COMPLETION_ID.removeprefix("chatcmpl-"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": CREATED,
        "model": reply.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
        "usage": None,
    }
    if chat:
        envelope["service_tier"] = "default"
    return envelope


async def _send_embeddings(send: Any, reply: Any, body: dict[str, Any]) -> None:
    assert isinstance(reply, EmbeddingsReply)
    as_base64 = reply.force_base64 or body.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, as_base64=as_base64)}
        for index, vector in enumerate(reply.vectors)
    ]
    document = {
        "object": "list",
        "data": data,
        "model": reply.model,
        "usage": {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens},
    }
    await _send_json(send, 200, document, headers=(("x-request-id", REQUEST_ID),))


def _encoded(vector: tuple[float, ...], *, as_base64: bool) -> Any:
    if as_base64:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return list(vector)


async def _send_error(send: Any, error: Error) -> None:
    document = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
    await _send_json(send, error.status, document, headers=error.headers)


async def _send_json(
    send: Any, status: int, document: Any, *, headers: tuple[tuple[str, str], ...]
) -> None:
    raw = json.dumps(document).encode()
    head = [(b"content-type", b"application/json")]
    head += [(name.encode(), value.encode()) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


async def _send_event(send: Any, data: str) -> None:
    await send(
        {"type": "http.response.body", "body": f"data: {data}\n\n".encode(), "more_body": True}
    )


async def _read_body(receive: Any) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
