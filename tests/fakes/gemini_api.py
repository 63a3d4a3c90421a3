"""A loopback fake of Gemini's API (v1beta), written from Google's published reference.

    fake = GeminiFake()
    fake.script(Stream([response(candidate(text="Hi", finish="STOP"), usage=usage_metadata())]))
    with serve(fake) as base_url:
        ...  # GeminiProvider(..., base_url=base_url, api_key=fake.api_key)
    fake.received[0].body  # what reached it

It checks what the reference requires of a call: POST, the `x-goog-api-key` header (a wrong key
is Gemini's 400 INVALID_ARGUMENT with reason API_KEY_INVALID, none a 403), the path
`/v1beta/models/{model}:{method}` (streaming only with `alt=sse`), and the body's shapes: known
fields only (Gemini rejects unknown names), roles "user"/"model", one datum per part, Schema
objects of the OpenAPI subset with upper-case types, batches of at most 100 embed requests
naming the path's model, countTokens (answered with `tokens_counted`). A call that breaks a
rule gets Gemini's error envelope {"error": {"code", "message", "status", "details"}}.

Replies are scripted per call, in order (`script`); without one, a call gets a short text
answer. A stream is one `data: <GenerateContentResponse>` event per object, as Gemini frames
them (CRLF), usageMetadata on the last; generateContent answers the same objects merged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Send = Any
Receive = Any

API_KEY = "test-gemini-key"
MODEL_VERSION = "gemini-2.5-flash-001"

_REQUEST_FIELDS = {
    "contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
    "generationConfig", "cachedContent",
}  # fmt: skip
_GENERATION_FIELDS = {
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
    "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK",
    "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
    "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig", "mediaResolution",
}  # fmt: skip
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
_PART_EXTRAS = {"thought", "thoughtSignature", "videoMetadata"}
_SCHEMA_FIELDS = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
}  # fmt: skip
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_MODES = {"AUTO", "ANY", "NONE", "VALIDATED"}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


# --- Building Gemini's response objects --------------------------------------------------


def candidate(
    index: int = 0,
    *,
    text: str | None = None,
    calls: tuple[tuple[str, dict[str, Any]], ...] = (),
    finish: str | None = None,
) -> dict[str, Any]:
    """A Candidate: some text and/or whole function calls (name, args), maybe a finishReason."""
    parts: list[dict[str, Any]] = [{"text": text}] if text is not None else []
    parts += [{"functionCall": {"name": name, "args": args}} for name, args in calls]
    built: dict[str, Any] = {"index": index}
    if parts:
        built["content"] = {"role": "model", "parts": parts}
    if finish:
        built["finishReason"] = finish
    return built


def usage_metadata(
    *, prompt: int, candidates: int, thoughts: int = 0, cached: int = 0
) -> dict[str, Any]:
    """UsageMetadata; promptTokenCount includes the cached tokens, as Gemini counts them."""
    metadata = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
    }
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    if cached:
        metadata["cachedContentTokenCount"] = cached
    return metadata


def response(
    *candidates: dict[str, Any],
    usage: dict[str, Any] | None = None,
    block_reason: str | None = None,
    response_id: str = "resp-gemini-1",
) -> dict[str, Any]:
    """A GenerateContentResponse."""
    built: dict[str, Any] = {"modelVersion": MODEL_VERSION, "responseId": response_id}
    if candidates:
        built["candidates"] = list(candidates)
    if block_reason:
        built["promptFeedback"] = {"blockReason": block_reason}
    if usage:
        built["usageMetadata"] = usage
    return built


def error_body(status: int, message: str, *, details: list[Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            "details": details or [],
        }
    }


def merged(responses: list[dict[str, Any]]) -> dict[str, Any]:
    """What generateContent answers for the objects streamGenerateContent would send."""
    whole: dict[str, Any] = {}
    candidates: dict[int, dict[str, Any]] = {}
    for item in responses:
        whole.update({key: value for key, value in item.items() if key != "candidates"})
        for part in item.get("candidates", []):
            merged_candidate = candidates.setdefault(part["index"], {"index": part["index"]})
            if "content" in part:
                content = merged_candidate.setdefault("content", {"role": "model", "parts": []})
                content["parts"].extend(part["content"]["parts"])
            if "finishReason" in part:
                merged_candidate["finishReason"] = part["finishReason"]
    if candidates:
        whole["candidates"] = [candidates[index] for index in sorted(candidates)]
    return whole


# --- Scripted replies --------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class Stream:
    """GenerateContentResponse objects: streamed as events, or merged for generateContent."""

    responses: list[dict[str, Any]]
    hold_open: bool = False  # after the last event, wait for the client to go away
    cut_after: int | None = None  # drop the connection after this many events
    malformed_after: int | None = None  # send a chunk that is not JSON after this many


@dataclass
class Status:
    """A non-2xx answer in Gemini's error envelope."""

    status: int
    message: str = "failed"
    headers: dict[str, str] = field(default_factory=dict)
    details: list[Any] = field(default_factory=list)


@dataclass
class Slow:
    """No answer for `delay_s` (a timeout for a client that waits less)."""

    delay_s: float


Reply = Stream | Status | Slow


class _Invalid(Exception):
    def __init__(self, message: str, *, status: int = 400, details: list[Any] | None = None):
        super().__init__(message)
        self.status = status
        self.details = details or []


class GeminiFake:
    """An ASGI app playing Gemini; `received` records every call, valid or not."""

    def __init__(self, *, api_key: str = API_KEY, model: str = "gemini-2.5-flash") -> None:
        self.api_key = api_key
        self.model = model
        self.received: list[Received] = []
        self._replies: deque[Reply] = deque()
        self.disconnected = threading.Event()  # a held stream saw its client go away

    def script(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        call = Received(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode(),
            headers={key.decode().lower(): value.decode() for key, value in scope["headers"]},
            body=await _read_body(receive),
        )
        self.received.append(call)
        try:
            action = self._check(call)
        except _Invalid as invalid:
            body = error_body(invalid.status, str(invalid), details=invalid.details)
            await _send_json(send, invalid.status, body)
            return
        reply = self._replies.popleft() if self._replies else _default_reply()
        await self._play(reply, action=action, call=call, send=send, receive=receive)

    # -- validation, from the reference --

    def _check(self, call: Received) -> str:
        if call.method != "POST":
            raise _Invalid("Method not allowed.", status=404)
        key = call.headers.get("x-goog-api-key")
        if key is None:
            raise _Invalid("Method doesn't allow unregistered callers.", status=403)
        if key != self.api_key:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ]
            raise _Invalid("API key not valid. Please pass a valid API key.", details=details)
        prefix = f"/v1beta/models/{self.model}:"
        if not call.path.startswith(prefix):
            raise _Invalid(f"models/{call.path} is not found for API version v1beta.", status=404)
        action = call.path.removeprefix(prefix)
        if action == "streamGenerateContent" and call.query != "alt=sse":
            raise _Invalid("This fake streams server-sent events only (alt=sse).")
        if not isinstance(call.body, dict):
            raise _Invalid("Invalid JSON payload received.")
        if action in ("generateContent", "streamGenerateContent"):
            _check_generate(call.body)
        elif action == "batchEmbedContents":
            _check_embed(call.body, model=f"models/{self.model}")
        elif action == "countTokens":
            _check_count(call.body, model=f"models/{self.model}")
        else:
            raise _Invalid(f"Unknown method {action}.", status=404)
        return action

    # -- replies --

    async def _play(
        self, reply: Reply, *, action: str, call: Received, send: Send, receive: Receive
    ) -> None:
        if isinstance(reply, Slow):
            await asyncio.sleep(reply.delay_s)
            reply = _default_reply()
        if isinstance(reply, Status):
            body = error_body(reply.status, reply.message, details=reply.details)
            await _send_json(send, reply.status, body, headers=reply.headers)
        elif action == "batchEmbedContents":
            await _send_json(send, 200, embeddings_for(call.body))
        elif action == "countTokens":
            await _send_json(send, 200, {"totalTokens": tokens_counted(call.body)})
        elif action == "generateContent":
            await _send_json(send, 200, merged(reply.responses))
        else:
            await self._stream(reply, send=send, receive=receive)

    async def _stream(self, reply: Stream, *, send: Send, receive: Receive) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for sent, item in enumerate(reply.responses):
            if sent == reply.cut_after:
                raise ConnectionAbortedError("the fake drops the stream mid-way")
            data = b"{not json" if sent == reply.malformed_after else json.dumps(item).encode()
            event = b"data: " + data + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if reply.hold_open:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
            return
        await send({"type": "http.response.body", "body": b""})


def embeddings_for(body: dict[str, Any]) -> dict[str, Any]:
    """Deterministic vectors that tell the inputs apart: [characters, words, 0.5]."""
    vectors = []
    for request in body["requests"]:
        text = request["content"]["parts"][0]["text"]
        vectors.append({"values": [float(len(text)), float(len(text.split())), 0.5]})
    return {"embeddings": vectors}


def tokens_counted(body: dict[str, Any]) -> int:
    """countTokens' totalTokens, deterministic: each text part's words, and 3 per content."""
    request = body.get("generateContentRequest") or body
    contents = [request.get("systemInstruction") or {"parts": []}, *request["contents"]]
    return sum(
        3 + sum(len(str(part.get("text", "")).split()) for part in content["parts"])
        for content in contents
    )


def _check_count(body: dict[str, Any], *, model: str) -> None:
    """countTokens takes `contents` or a whole `generateContentRequest`, not both."""
    _known(body, {"contents", "generateContentRequest"}, where="")
    if ("contents" in body) == ("generateContentRequest" in body):
        raise _Invalid("* CountTokensRequest: give either contents or generateContentRequest")
    inner = body.get("generateContentRequest")
    if inner is None:
        _check_generate({"contents": body["contents"]})
        return
    if not isinstance(inner, dict) or inner.get("model") != model:
        raise _Invalid(f"* GenerateContentRequest.model: must be {model}")
    _check_generate({key: value for key, value in inner.items() if key != "model"})


def _default_reply() -> Stream:
    return Stream(
        [
            response(candidate(text="Hello")),
            response(
                candidate(text=" there.", finish="STOP"),
                usage=usage_metadata(prompt=5, candidates=3),
            ),
        ]
    )


# --- Body checks -------------------------------------------------------------------------


def _check_generate(body: dict[str, Any]) -> None:
    _known(body, _REQUEST_FIELDS, where="")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _Invalid("* GenerateContentRequest.contents: contents is not specified")
    for index, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            raise _Invalid(f"Please use a valid role: user, model. (contents[{index}])")
        _check_parts(content.get("parts"), where=f"contents[{index}]")
    if "systemInstruction" in body:
        _check_parts(body["systemInstruction"].get("parts"), where="systemInstruction")
    config = body.get("generationConfig", {})
    _known(config, _GENERATION_FIELDS, where="generation_config.")
    if not isinstance(config.get("maxOutputTokens", 1), int):
        raise _Invalid("generation_config.max_output_tokens must be an integer")
    if not -(2**31) <= config.get("seed", 0) < 2**31:
        raise _Invalid("generation_config.seed must be an int32")
    for tool in body.get("tools", []):
        for declaration in tool.get("functionDeclarations", []):
            if not declaration.get("name"):
                raise _Invalid("function_declarations[].name: name is not specified")
            if "parameters" in declaration:
                _check_schema(declaration["parameters"], where=declaration["name"])
    mode = body.get("toolConfig", {}).get("functionCallingConfig", {}).get("mode", "AUTO")
    if mode not in _MODES:
        raise _Invalid(f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})")


def _known(value: dict[str, Any], names: set[str], *, where: str) -> None:
    for name in value:
        if name not in names:
            raise _Invalid(f'Invalid JSON payload received. Unknown name "{where}{name}".')


def _check_parts(parts: Any, *, where: str) -> None:
    if not isinstance(parts, list) or not parts:
        raise _Invalid(f"* {where}.parts: must not be empty")
    for index, part in enumerate(parts):
        data = set(part) & _PART_DATA
        if len(data) != 1 or set(part) - _PART_DATA - _PART_EXTRAS:
            raise _Invalid(f"* {where}.parts[{index}]: exactly one datum per part ({part})")
        _check_datum(part, where=f"{where}.parts[{index}]")


def _check_datum(part: dict[str, Any], *, where: str) -> None:
    if "text" in part and not isinstance(part["text"], str):
        raise _Invalid(f"* {where}.text must be a string")
    if "inlineData" in part:
        inline = part["inlineData"]
        try:
            base64.b64decode(inline["data"], validate=True)
        except (KeyError, binascii.Error) as failure:
            raise _Invalid(f"* {where}.inline_data: invalid data") from failure
        if not inline.get("mimeType"):
            raise _Invalid(f"* {where}.inline_data.mime_type is required")
    if "fileData" in part and not part["fileData"].get("fileUri"):
        raise _Invalid(f"* {where}.file_data.file_uri is required")
    if "functionCall" in part:
        call = part["functionCall"]
        if not call.get("name") or not isinstance(call.get("args", {}), dict):
            raise _Invalid(f"* {where}.function_call: a name and object args are required")
    if "functionResponse" in part:
        answer = part["functionResponse"]
        if not answer.get("name") or not isinstance(answer.get("response"), dict):
            raise _Invalid(f"* {where}.function_response: a name and an object are required")


def _check_schema(schema: Any, *, where: str) -> None:
    """Gemini's Schema: its own fields only, one upper-case type, properties of schemas."""
    if not isinstance(schema, dict):
        raise _Invalid(f"* {where}: a schema must be an object")
    for name in schema:
        if name not in _SCHEMA_FIELDS:
            raise _Invalid(f'Invalid JSON payload received. Unknown name "{name}" at {where}')
    if "type" in schema and schema["type"] not in _TYPES:
        raise _Invalid(f"Invalid value at '{where}.type' ({schema['type']!r})")
    if schema.get("type") == "OBJECT" and "properties" in schema and not schema["properties"]:
        raise _Invalid(f"* {where}.properties: should be non-empty for OBJECT type")
    for name, child in schema.get("properties", {}).items():
        _check_schema(child, where=f"{where}.properties.{name}")
    if "items" in schema:
        _check_schema(schema["items"], where=f"{where}.items")
    for index, child in enumerate(schema.get("anyOf", [])):
        _check_schema(child, where=f"{where}.anyOf[{index}]")


def _check_embed(body: dict[str, Any], *, model: str) -> None:
    _known(body, {"requests"}, where="")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise _Invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
    if len(requests) > 100:
        raise _Invalid("* BatchEmbedContentsRequest.requests: at most 100 requests in a batch")
    for index, request in enumerate(requests):
        if request.get("model") != model:
            raise _Invalid(f"requests[{index}].model must be the path's model ({model})")
        _check_parts(request.get("content", {}).get("parts"), where=f"requests[{index}].content")


# --- ASGI plumbing -----------------------------------------------------------------------


async def _read_body(receive: Receive) -> Any:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return None


async def _send_json(
    send: Send, status: int, body: Any, *, headers: dict[str, str] | None = None
) -> None:
    raw = json.dumps(body).encode()
    header_list = [(b"content-type", b"application/json; charset=UTF-8")]
    header_list += [(key.encode(), value.encode()) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw})
