"""Gemini's native API (generateContent, streamGenerateContent, batchEmbedContents).

Two pure mappings and a thin transport: `gemini_request` turns a validated OpenAI chat request
into a GenerateContentRequest body, `StreamMapper` turns each GenerateContentResponse into
OpenAI chunk choices while keeping the call's `Usage` current, and `GeminiProvider` posts.

Choices made where the APIs differ (each one a test):
- An http(s) image URL goes as `fileData` (the Gemini API fetches public and signed URLs
  itself); its MIME type is guessed from the URL's extension, image/jpeg when it has none.
- Tool parameter schemas are cut down to the OpenAPI subset Gemini's `Schema` object takes
  (`additionalProperties`, `$schema`, `$ref` … are dropped; a type list with "null" becomes
  `nullable`). A json_schema response format goes whole as `responseJsonSchema`, which takes
  JSON Schema as it is.
- Gemini 3 refuses replayed function calls without the model's `thoughtSignature`, which
  OpenAI clients never see or send back: each replayed call turn carries Google's documented
  "skip validation" sentinel instead.
- Usage: `promptTokenCount` already includes `cachedContentTokenCount` (as OpenAI's
  prompt_tokens includes cached_tokens); `candidatesTokenCount` excludes `thoughtsTokenCount`,
  and OpenAI counts reasoning inside completion_tokens, so completion = candidates + thoughts.
- logit_bias and logprobs have no Gemini counterpart here: 400 before any call. A seed is
  folded into Gemini's int32 range. `parallel_tool_calls: false` keeps the first call of a turn.
"""

from __future__ import annotations

import json
import mimetypes
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from apps.catalog.entries import CatalogEntry, UpstreamRoute
from apps.protocol.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    FunctionDefinition,
    NamedToolChoice,
    ResponseFormat,
    Tool,
)
from apps.providers.base import Chunk, Embeddings, Usage
from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.tokens import count_tokens, embedding_input_bound

UPSTREAM = "Gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
EMBED_BATCH_SIZE = 100  # batchEmbedContents takes at most 100 requests
# Gemini bills an image as 258 tokens per 768x768 tile (one tile up to 384x384). The size is
# unknown until Gemini has the image: allow 16 tiles, a 3072x3072 image, per image.
IMAGE_TOKEN_ALLOWANCE = 16 * 258
_REQUEST_OVERHEAD_TOKENS = 32
_MESSAGE_OVERHEAD_TOKENS = 8  # a turn's role and separators
# Documented by Google for function calls whose signature the client could not keep.
_SKIP_SIGNATURE = "skip_thought_signature_validator"
_KEY_REJECTED = "gemini_api_key_invalid"

_UNSUPPORTED = ("logit_bias", "logprobs", "top_logprobs")
_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
# The keywords of Gemini's Schema object that are copied as they are; `type`, `properties`,
# `items` and `anyOf` are mapped.
_SCHEMA_KEYWORDS = frozenset(
    {
        "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
        "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
        "example", "propertyOrdering", "default", "minimum", "maximum",
    }
)  # fmt: skip


def _unsupported(param: str, what: str) -> ProviderError:
    return ProviderError(
        f"{what} is not supported by this model's provider (Gemini).",
        status=400,
        code="unsupported_parameter",
        param=param,
    )


def _invalid(message: str, *, param: str) -> ProviderError:
    return ProviderError(message, status=400, code="invalid_value", param=param)


# --- OpenAI request -> Gemini GenerateContentRequest ----------------------------------------


def gemini_request(request: ChatCompletionRequest, *, max_tokens: int) -> dict[str, Any]:
    """The GenerateContentRequest body of `request`; ProviderError 400 for what Gemini lacks."""
    for param in _UNSUPPORTED:
        if getattr(request, param):
            raise _unsupported(param, f"'{param}'")
    system, contents = _contents(request.messages)
    body: dict[str, Any] = {
        "contents": contents,
        "generationConfig": _generation_config(request, max_tokens=max_tokens),
    }
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = [_declaration(tool.function) for tool in request.tools]
        body["tools"] = [{"functionDeclarations": declarations}]
        if request.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
    return body


def _generation_config(request: ChatCompletionRequest, *, max_tokens: int) -> dict[str, Any]:
    config: dict[str, Any] = {"maxOutputTokens": max_tokens, "candidateCount": request.n}
    optional = {
        "temperature": request.temperature,
        "topP": request.top_p,
        "topK": request.top_k or None,  # 0 means no top-k, as on the local engine
        "presencePenalty": request.presence_penalty,
        "frequencyPenalty": request.frequency_penalty,
        # Gemini's seed is an int32; OpenAI's an int64. Folding keeps a seed reproducible.
        "seed": None if request.seed is None else request.seed & 0x7FFFFFFF,
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    if request.stop_list:
        config["stopSequences"] = request.stop_list
    config.update(_response_format(request.response_format))
    return config


def _response_format(response_format: ResponseFormat | None) -> dict[str, Any]:
    if response_format is None or response_format.type == "text":
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    if response_format.type == "json_schema" and schema is not None:
        config["responseJsonSchema"] = schema
    return config


def _calling_config(choice: str | NamedToolChoice) -> dict[str, Any]:
    if isinstance(choice, NamedToolChoice):
        return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}


def _declaration(function: FunctionDefinition) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    parameters = openapi_schema(function.parameters or {})
    # Gemini refuses an OBJECT without properties: a function without parameters has none.
    if parameters.get("properties"):
        declaration["parameters"] = parameters
    return declaration


def openapi_schema(schema: Any) -> Any:
    """A JSON Schema cut down to the OpenAPI 3.0 subset of Gemini's Schema object."""
    if not isinstance(schema, dict):
        return schema
    pruned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            pruned.update(_schema_type(value))
        elif key == "properties" and isinstance(value, dict):
            pruned[key] = {name: openapi_schema(item) for name, item in value.items()}
        elif key == "items":
            pruned[key] = openapi_schema(value)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            pruned["anyOf"] = [openapi_schema(item) for item in value]
        elif key in _SCHEMA_KEYWORDS:
            pruned[key] = value
    return pruned


def _schema_type(value: Any) -> dict[str, Any]:
    """Gemini's Type enum is upper case, one type per schema; "null" is `nullable`."""
    types = [value] if isinstance(value, str) else [t for t in value if isinstance(t, str)]
    kept = [t.upper() for t in types if t != "null"]
    mapped: dict[str, Any] = {"nullable": True} if "null" in types else {}
    if len(kept) == 1:
        mapped["type"] = kept[0]
    return mapped


def _contents(
    messages: list[ChatMessage],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents); consecutive turns of one role are merged, which
    Gemini requires of the function responses answering one turn's parallel calls."""
    call_names = {
        call.id: call.function.name for message in messages for call in message.tool_calls or ()
    }
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message, index))
            continue
        role, parts = _turn(message, index, call_names)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _turn(
    message: ChatMessage, index: int, call_names: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "assistant":
        return "model", _model_parts(message, index)
    if message.role == "tool":
        return "user", [_function_response(message, index, call_names)]
    return "user", _user_parts(message, index)


def _texts(message: ChatMessage, index: int) -> list[str]:
    """The text of a message that may hold only text (system, developer, assistant, tool)."""
    if isinstance(message.content, str):
        return [message.content] if message.content else []
    texts = []
    for position, part in enumerate(message.content or ()):
        if part.type != "text":
            raise _invalid(
                f"A {message.role} message may hold only text parts, not '{part.type}'.",
                param=f"messages[{index}].content[{position}].type",
            )
        if part.text:
            texts.append(part.text)
    return texts


def _user_parts(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    if not isinstance(message.content, list):
        return [{"text": message.content}] if message.content else []
    parts = []
    for position, part in enumerate(message.content):
        param = f"messages[{index}].content[{position}]"
        if part.type == "text" and part.text:
            parts.append({"text": part.text})
        elif part.type == "image_url" and part.image_url is not None:
            parts.append(_image(part.image_url.url, param=f"{param}.image_url.url"))
        elif part.type not in ("text", "image_url"):
            raise _unsupported(f"{param}.type", f"Content of type '{part.type}'")
    return parts


def _image(url: str, *, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        mime_type, _, encoding = header.removeprefix("data:").partition(";")
        if not comma or encoding != "base64" or not mime_type.startswith("image/"):
            raise _invalid(
                "An image data URL must look like data:image/<type>;base64,<data>.", param=param
            )
        return {"inlineData": {"mimeType": mime_type, "data": data}}
    if urlsplit(url).scheme in ("http", "https"):
        guessed, _ = mimetypes.guess_type(urlsplit(url).path)
        mime_type = guessed if guessed and guessed.startswith("image/") else "image/jpeg"
        return {"fileData": {"mimeType": mime_type, "fileUri": url}}
    raise _invalid("An image URL must be an http(s) URL or a base64 data URL.", param=param)


def _model_parts(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": text} for text in _texts(message, index)]
    for position, call in enumerate(message.tool_calls or ()):
        param = f"messages[{index}].tool_calls[{position}].function.arguments"
        part: dict[str, Any] = {
            "functionCall": {"name": call.function.name, "args": _arguments(call, param=param)}
        }
        if position == 0:  # of parallel calls, only the first carries a signature
            part["thoughtSignature"] = _SKIP_SIGNATURE
        parts.append(part)
    return parts


def _arguments(call: Any, *, param: str) -> dict[str, Any]:
    text = call.function.arguments.strip()
    try:
        arguments = json.loads(text) if text else {}
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise _invalid("A tool call's arguments must be a JSON object.", param=param)
    return arguments


def _function_response(
    message: ChatMessage, index: int, call_names: dict[str, str]
) -> dict[str, Any]:
    name = call_names.get(message.tool_call_id or "")
    if name is None:
        raise _invalid(
            "A tool message must answer a tool call of an earlier assistant message.",
            param=f"messages[{index}].tool_call_id",
        )
    text = "".join(_texts(message, index))
    try:
        result = json.loads(text)
    except ValueError:
        result = text
    # Gemini's `response` is a JSON object (a Struct).
    response = result if isinstance(result, dict) else {"result": result}
    return {"functionResponse": {"name": name, "response": response}}


# --- Gemini GenerateContentResponse -> OpenAI chunks and usage ------------------------------


@dataclass
class _Choice:
    is_started: bool = False
    calls: int = 0
    finish_reason: str | None = None


class StreamMapper:
    """Maps the GenerateContentResponse objects of one call, in order, to chunks.

    Usage is kept current: the text so far is counted with Gemini's tokenizer until Gemini's
    own `usageMetadata` arrives, which is taken as exact once every choice has finished.
    """

    def __init__(self, *, n: int, usage: Usage, parallel_tool_calls: bool = True) -> None:
        self._choices = [_Choice() for _ in range(n)]
        self._usage = usage
        self._is_parallel = parallel_tool_calls
        self._counted = 0  # completion tokens counted from the text
        self._reported = 0  # completion tokens in the latest usageMetadata

    @property
    def is_complete(self) -> bool:
        return all(choice.finish_reason for choice in self._choices)

    def chunks(self, response: Any) -> list[Chunk]:
        if not isinstance(response, dict):
            raise http.malformed(UPSTREAM, "a response that is not a JSON object")
        if "error" in response:
            raise _stream_error(response["error"])
        self._usage.upstream_model = response.get("modelVersion") or self._usage.upstream_model
        self._usage.upstream_request_id = response.get("responseId") or (
            self._usage.upstream_request_id
        )
        chunks = []
        if (response.get("promptFeedback") or {}).get("blockReason"):
            chunks = [self._finish(index, "content_filter") for index in self._open_indexes()]
        for candidate in response.get("candidates") or ():
            chunks.extend(self._candidate(candidate))
        if isinstance(response.get("usageMetadata"), dict):
            self._record_usage(response["usageMetadata"])
        return [chunk for chunk in chunks if chunk]

    def _open_indexes(self) -> list[int]:
        return [index for index, choice in enumerate(self._choices) if not choice.finish_reason]

    def _candidate(self, candidate: dict[str, Any]) -> Iterator[Chunk]:
        index = candidate.get("index", 0)
        if not 0 <= index < len(self._choices) or self._choices[index].finish_reason:
            return  # exactly one finish_reason per choice: nothing after it
        for part in (candidate.get("content") or {}).get("parts") or ():
            if part.get("thought"):
                continue  # a thought summary, only sent when asked for; billed in usage
            if part.get("text"):
                self._count(part["text"])
                yield self._delta(index, {"content": part["text"]})
            elif isinstance(part.get("functionCall"), dict):
                yield self._call(index, part["functionCall"])
        if reason := candidate.get("finishReason"):
            yield self._finish(index, self._finish_reason(index, reason))

    def _call(self, index: int, call: dict[str, Any]) -> Chunk:
        choice = self._choices[index]
        if choice.calls and not self._is_parallel:
            return {}
        arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
        self._count(call.get("name", "") + arguments)
        delta = {
            "index": choice.calls,
            "id": f"call_{uuid.uuid4().hex[:24]}",  # Gemini's own ids are optional
            "type": "function",
            "function": {"name": call.get("name", ""), "arguments": arguments},
        }
        choice.calls += 1
        return self._delta(index, {"content": None, "tool_calls": [delta]})

    def _finish_reason(self, index: int, reason: str) -> str:
        mapped = _FINISH_REASONS.get(reason, "stop")
        return "tool_calls" if mapped == "stop" and self._choices[index].calls else mapped

    def _delta(self, index: int, delta: dict[str, Any]) -> Chunk:
        choice = self._choices[index]
        if not choice.is_started:
            choice.is_started = True
            delta = {"role": "assistant", **delta}
        return {"choices": [{"index": index, "delta": delta, "finish_reason": None}]}

    def _finish(self, index: int, reason: str) -> Chunk:
        chunk = self._delta(index, {})
        if chunk["choices"][0]["delta"]:  # nothing came before: an answer with no content
            chunk["choices"][0]["delta"]["content"] = None
        chunk["choices"][0]["finish_reason"] = reason
        self._choices[index].finish_reason = reason
        return chunk

    def _count(self, text: str) -> None:
        self._counted += count_tokens(text, family="gemini")
        if not self._usage.exact:
            self._usage.completion_tokens = max(self._counted, self._reported)

    def _record_usage(self, metadata: dict[str, Any]) -> None:
        thoughts = int(metadata.get("thoughtsTokenCount", 0))
        self._reported = int(metadata.get("candidatesTokenCount", 0)) + thoughts
        usage = self._usage
        usage.prompt_tokens = int(metadata.get("promptTokenCount", usage.prompt_tokens))
        usage.cached_tokens = int(metadata.get("cachedContentTokenCount", 0))
        usage.reasoning_tokens = thoughts
        usage.exact = self.is_complete
        usage.completion_tokens = (
            self._reported if usage.exact else max(self._counted, self._reported)
        )


def _stream_error(error: Any) -> ProviderError:
    message = error.get("message", "") if isinstance(error, dict) else str(error)
    return ProviderError(
        f"{UPSTREAM} failed during the stream: {message}",
        status=502,
        code="upstream_error",
        retryable=True,
    )


# --- Prompt size ---------------------------------------------------------------------------


def _message_texts(message: ChatMessage) -> Iterator[str]:
    if isinstance(message.content, str):
        yield message.content
    for part in message.content if isinstance(message.content, list) else ():
        yield part.text or ""
    for call in message.tool_calls or ():
        yield call.function.name + call.function.arguments


def _image_count(request: ChatCompletionRequest) -> int:
    return sum(
        part.type == "image_url"
        for message in request.messages
        if isinstance(message.content, list)
        for part in message.content
    )


def _chat_bound(request: ChatCompletionRequest) -> int:
    # A token of Gemini's tokenizer covers at least one byte of UTF-8.
    text_bytes = sum(
        len(text.encode()) for message in request.messages for text in _message_texts(message)
    )
    declarations = [_tool_json(tool) for tool in request.tools or ()]
    schema = request.response_format.model_dump_json() if request.response_format else ""
    return (
        _REQUEST_OVERHEAD_TOKENS
        + _MESSAGE_OVERHEAD_TOKENS * len(request.messages)
        + text_bytes
        + sum(len(declaration.encode()) for declaration in declarations)
        + len(schema.encode())
        + IMAGE_TOKEN_ALLOWANCE * _image_count(request)
    )


def _tool_json(tool: Tool) -> str:
    return tool.model_dump_json(exclude_none=True)


def _completion_bound(request: CompletionRequest) -> int:
    prompts = request.prompt if isinstance(request.prompt, list) else [request.prompt]
    size = sum(len(p.encode()) if isinstance(p, str) else _token_count(p) for p in prompts)
    return _REQUEST_OVERHEAD_TOKENS + size


def _token_count(prompt: int | list[int]) -> int:
    return 1 if isinstance(prompt, int) else len(prompt)


# --- Transport -----------------------------------------------------------------------------


class _ErrorReader:
    """Reads Gemini's {"error": {"code", "message", "status", "details"}} for `http.opened`.

    Gemini tells a 429's wait in a RetryInfo detail ("retryDelay": "37s") rather than in a
    Retry-After header; the reader keeps it for the transport to put on the error.
    """

    def __init__(self) -> None:
        self.retry_delay_s: float | None = None

    def __call__(self, body: Any) -> tuple[str, str | None, str | None]:
        error = body["error"]
        details = [detail for detail in error.get("details") or () if isinstance(detail, dict)]
        for detail in details:
            if detail.get("@type", "").endswith("google.rpc.RetryInfo"):
                self.retry_delay_s = _seconds(detail.get("retryDelay"))
        # Gemini answers a bad API key with 400 INVALID_ARGUMENT: the operator's fault, and
        # the customer must not be told that their request was invalid.
        is_key_rejected = any(detail.get("reason") == "API_KEY_INVALID" for detail in details)
        return str(error["message"]), None, _KEY_REJECTED if is_key_rejected else None


def _seconds(duration: Any) -> float | None:
    """A protobuf Duration in JSON ("37s", "0.5s") in seconds, or None."""
    try:
        return max(0.0, float(str(duration).removesuffix("s")))
    except ValueError:
        return None


def _resource(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


class GeminiProvider:
    """A catalog entry on a Gemini route."""

    name = "gemini"

    def __init__(
        self, entry: CatalogEntry, route: UpstreamRoute, *, base_url: str, api_key: str
    ) -> None:
        self._entry = entry
        self._route = route
        self._base_url = base_url
        self._api_key = api_key
        self._route_index = entry.routes.index(route) if route in entry.routes else 0

    def is_available(self) -> bool:
        return bool(self._base_url) and (bool(self._api_key) or not self._route.api_key_env)

    def prompt_token_bound(
        self, request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    ) -> int:
        if isinstance(request, EmbeddingRequest):
            return embedding_input_bound(request)
        if isinstance(request, CompletionRequest):
            return _completion_bound(request)
        return _chat_bound(request)

    async def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        body = gemini_request(request, max_tokens=max_tokens)
        self._label(usage)
        usage.prompt_tokens = count_tokens(
            "".join(text for message in request.messages for text in _message_texts(message)),
            family="gemini",
        )
        mapper = StreamMapper(
            n=request.n, usage=usage, parallel_tool_calls=request.parallel_tool_calls is not False
        )
        is_streamed = bool(request.stream)
        method = "streamGenerateContent?alt=sse" if is_streamed else "generateContent"
        path = f"{_resource(self._route.model)}:{method}"
        async with (
            self._opened(path, body) as response,
            aclosing(_responses(response, is_streamed=is_streamed)) as responses,
        ):
            async for item in responses:
                for chunk in mapper.chunks(item):
                    yield chunk
        if not mapper.is_complete:
            raise http.malformed(UPSTREAM, "a response that ended before every candidate did")

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        """The prompt's tokens as Gemini counts them (`countTokens`, which is free)."""
        model = _resource(self._route.model)
        body = gemini_request(request, max_tokens=1)
        body.pop("generationConfig", None)  # sampling does not change the prompt
        counted = {"generateContentRequest": {"model": model, **body}}
        async with self._opened(f"{model}:countTokens", counted) as response:
            document = await http.read_json(response, upstream=UPSTREAM)
        total = document.get("totalTokens") if isinstance(document, dict) else None
        if type(total) is not int:
            raise http.malformed(UPSTREAM, "a countTokens answer without totalTokens")
        return total

    def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        return http.refused_stream(
            ProviderError(
                f"The model `{self._entry.id}` serves chat completions only "
                "(/v1/chat/completions) on this route.",
                status=400,
                code="unsupported_endpoint",
            )
        )

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        texts = _embedding_texts(request.input)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH_SIZE):
            vectors.extend(await self._embed_batch(texts[start : start + EMBED_BATCH_SIZE]))
        # batchEmbedContents reports no token count: an estimate with Gemini's tokenizer.
        usage = Usage(prompt_tokens=sum(count_tokens(text, family="gemini") for text in texts))
        self._label(usage)
        return Embeddings(vectors=np.asarray(vectors, dtype=np.float32), usage=usage)

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        model = _resource(self._route.model)
        body = {"requests": [{"model": model, "content": {"parts": [{"text": t}]}} for t in texts]}
        async with self._opened(f"{model}:batchEmbedContents", body) as response:
            document = await http.read_json(response, upstream=UPSTREAM)
        embeddings = document.get("embeddings") if isinstance(document, dict) else None
        if not isinstance(embeddings, list) or len(embeddings) != len(texts):
            raise http.malformed(UPSTREAM, "embeddings that do not match the inputs")
        return [embedding["values"] for embedding in embeddings]

    def _label(self, usage: Usage) -> None:
        usage.provider = self.name
        usage.route_index = self._route_index
        usage.upstream_model = self._route.model  # until Gemini names the model version

    @asynccontextmanager
    async def _opened(self, path: str, body: dict[str, Any]) -> AsyncIterator[Any]:
        headers = {"x-goog-api-key": self._api_key} if self._api_key else {}
        reader = _ErrorReader()
        try:
            async with http.opened(
                self._base_url,
                f"v1beta/{path}",
                body=body,
                headers=headers,
                read_error=reader,
                upstream=UPSTREAM,
            ) as response:
                yield response
        except ProviderError as error:
            if error.code == "upstream_rate_limited" and error.retry_after_s is None:
                error.retry_after_s = reader.retry_delay_s
            if error.code != _KEY_REJECTED:
                raise
            raise ProviderError(
                f"{UPSTREAM} refused the API key: {error.message}",
                status=502,
                code="upstream_misconfigured",
                retryable=True,
            ) from error


async def _responses(response: Any, *, is_streamed: bool) -> AsyncGenerator[Any, None]:
    """The GenerateContentResponse objects of a call: one, or one per server-sent event."""
    if not is_streamed:
        yield await http.read_json(response, upstream=UPSTREAM)
        return
    async for _event, data in http.server_sent_events(response):
        yield http.loads(data, upstream=UPSTREAM)


def _embedding_texts(inputs: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not all(isinstance(text, str) for text in texts):
        raise _unsupported("input", "Token arrays as input")
    return [text for text in texts if isinstance(text, str)]
