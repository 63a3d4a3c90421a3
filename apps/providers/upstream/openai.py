"""Any OpenAI-compatible server: OpenAI, Groq, Together, DeepSeek, Mistral, Fireworks, OpenRouter,
vLLM, Ollama, llama.cpp's server.

The client's request goes up as the client sent it, with three things forced: the upstream's
model name, the output limit the gateway holds credit for, and a stream with usage (also for a
non-streamed client request: the gateway assembles the message, and a stream is what lets a
call cut short be billed for what it generated).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import numpy as np

from apps.catalog.entries import CatalogEntry, UpstreamRoute
from apps.protocol.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
)
from apps.providers.base import Chunk, Embeddings, Usage
from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.tokens import count_tokens, embedding_input_bound, family_for

# What a chat template adds per message (role markers, separators) and, once, to prime the
# answer. OpenAI's own count is 3 + 3; Llama 3's header is 5 tokens: 16 covers every template
# we know of with room to spare.
MESSAGE_OVERHEAD_TOKENS = 16
# What a server's template wraps around tool definitions or a response schema (instructions,
# <tools> tags), beyond the JSON it renders.
TOOLS_OVERHEAD_TOKENS = 512
# The most one image costs on the vendors' published formulas: OpenAI's patch-based models at
# high detail (1,536 patches x 1.62 for gpt-4.1-mini = 2,489), gpt-4o's tiles (85 + 8 x 170 =
# 1,445), Claude (~1,600 at its 1.15-megapixel cap), Gemini (258 per 768-px tile). The gateway
# caps the bound at the context window, so a generous allowance costs a hold, not a refusal.
IMAGE_TOKEN_BOUND = 2_560
# Fields never sent upstream although a client may: each would change what the operator pays
# or keeps on its account for this call, which the catalog price and the privacy policy do not
# cover (`service_tier: "priority"` bills more; `store` keeps the conversation at the vendor).
_WITHHELD_FIELDS = frozenset({"service_tier", "store"})


class OpenAIProvider:
    """One catalog entry on one OpenAI-compatible route."""

    name = "openai"

    def __init__(
        self, entry: CatalogEntry, route: UpstreamRoute, *, base_url: str, api_key: str
    ) -> None:
        self._entry = entry
        self._route = route
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._family = family_for(model=route.model)
        self._upstream = f"The upstream server of {entry.id}"

    def is_available(self) -> bool:
        # The registry builds a provider only for a configured route; whether the server is up
        # is learnt by calling it (a refused connection is retryable and falls back).
        return True

    def prompt_token_bound(
        self, request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    ) -> int:
        if isinstance(request, EmbeddingRequest):
            return embedding_input_bound(request)
        if isinstance(request, ChatCompletionRequest):
            return chat_prompt_bound(request)
        return completion_prompt_bound(request)

    async def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        body = chat_body(request, model=self._route.model, max_tokens=max_tokens)
        usage.prompt_tokens = self._chat_prompt_estimate(request)
        async with aclosing(self._stream("chat/completions", body=body, usage=usage)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        """An estimate, with the model family's tokenizer: OpenAI-compatible servers have no
        token counting endpoint. It is what a call's prompt is billed as until the server
        reports its own count."""
        return self._chat_prompt_estimate(request)

    async def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        body = completion_body(request, model=self._route.model, max_tokens=max_tokens)
        usage.prompt_tokens = sum(
            len(prompt) if isinstance(prompt, list) else self._count(prompt)
            for prompt in _prompts(request)
        )
        async with aclosing(self._stream("completions", body=body, usage=usage)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        body = embedding_body(request, model=self._route.model)
        async with http.opened(
            self._base_url,
            "embeddings",
            body=body,
            headers=self._headers,
            read_error=read_error,
            upstream=self._upstream,
        ) as response:
            document = await http.read_json(response, upstream=self._upstream)
            request_id = response.headers.get("x-request-id", "")
        vectors, usage = self._embeddings_from(document, expected=_input_count(request))
        usage.upstream_request_id = request_id
        return Embeddings(vectors=vectors, usage=usage)

    # --- the stream ---------------------------------------------------------------------

    async def _stream(
        self, path: str, *, body: dict[str, Any], usage: Usage
    ) -> AsyncGenerator[Chunk, None]:
        """The upstream's chunks that carry choices, with `usage` kept current.

        A failure is retryable only while nothing has been yielded: once a chunk has gone to
        the client, a retry (on this route or the next) would send a second answer after part
        of the first. Each inner generator is closed with its caller (`aclosing`): left to the
        garbage collector, the upstream would go on generating after the client left.
        """
        usage.provider = self.name
        yielded = False
        try:
            async with aclosing(self._chunks(path, body=body, usage=usage)) as chunks:
                async for chunk in chunks:
                    yield chunk
                    yielded = True
        except ProviderError as failure:
            if yielded:
                failure.retryable = False
            raise

    async def _chunks(
        self, path: str, *, body: dict[str, Any], usage: Usage
    ) -> AsyncGenerator[Chunk, None]:
        async with http.opened(
            self._base_url,
            path,
            body=body,
            headers=self._headers,
            read_error=read_error,
            upstream=self._upstream,
        ) as response:
            usage.upstream_request_id = response.headers.get("x-request-id", "")
            is_done = False
            # Read to the body's end (nothing follows [DONE]): the connection goes back to the
            # pool instead of being closed half-read, which cost a new connection per call.
            async for _, data in http.server_sent_events(response):
                if is_done or data.strip() == "[DONE]":
                    is_done = True
                    continue
                chunk = self._checked_chunk(http.loads(data, upstream=self._upstream))
                self._record(chunk, usage)
                if chunk.get("choices"):
                    yield chunk
        if not is_done:
            raise http.malformed(self._upstream, "a stream that ended before [DONE]")

    def _checked_chunk(self, chunk: Any) -> Chunk:
        if not isinstance(chunk, dict):
            raise http.malformed(self._upstream, "a chunk that is not a JSON object")
        if "error" in chunk:
            # OpenAI reports a failure after the 200 as an error object in the stream.
            message, _, _ = read_error(chunk)
            raise ProviderError(
                f"{self._upstream} failed mid-stream: {message}",
                status=502,
                code="upstream_error",
                retryable=True,
            )
        choices = chunk.get("choices")
        # vLLM and others send the closing usage chunk with `choices` null or absent.
        if choices is not None and not (
            isinstance(choices, list) and all(isinstance(choice, dict) for choice in choices)
        ):
            raise http.malformed(self._upstream, "a chunk whose choices are not a list of objects")
        return chunk

    def _record(self, chunk: Chunk, usage: Usage) -> None:
        """What one chunk tells about the call: who answered, and how much has been generated."""
        if not usage.upstream_model and isinstance(chunk.get("model"), str):
            usage.upstream_model = chunk["model"]
        if not usage.upstream_request_id and isinstance(chunk.get("id"), str):
            usage.upstream_request_id = chunk["id"]
        reported = chunk.get("usage")
        if isinstance(reported, dict):
            read_usage(reported, into=usage)
        elif not usage.exact:
            usage.completion_tokens += sum(
                self._count(text) for text in _generated_texts(chunk.get("choices") or ())
            )

    # --- estimates ----------------------------------------------------------------------

    def _count(self, text: str) -> int:
        return count_tokens(text, family=self._family)

    def _chat_prompt_estimate(self, request: ChatCompletionRequest) -> int:
        text = "".join(_message_texts(request.messages))
        schemas = _schemas_json(request)
        return (
            self._count(text)
            + self._count(schemas)
            + 3 * len(request.messages)  # OpenAI's per-message framing
            + 3  # and its priming of the answer
        )

    def _embeddings_from(self, document: Any, *, expected: int) -> tuple[np.ndarray, Usage]:
        try:
            rows = sorted(document["data"], key=lambda row: row["index"])
            vectors = np.stack([_vector(row["embedding"]) for row in rows])
            reported = document.get("usage") or {}
            prompt_tokens = int(reported.get("prompt_tokens", 0))
            model = document.get("model") or ""
        except (KeyError, TypeError, ValueError, AttributeError):
            raise http.malformed(
                self._upstream, "an embeddings body not in OpenAI's shape"
            ) from None
        if len(rows) != expected or vectors.ndim != 2:
            raise http.malformed(self._upstream, f"{len(rows)} embeddings for {expected} inputs")
        usage = Usage(
            prompt_tokens=prompt_tokens,
            provider=self.name,
            upstream_model=str(model),
            exact=True,
        )
        return vectors, usage


# --- request bodies (pure) -------------------------------------------------------------------


def chat_body(request: ChatCompletionRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The upstream body of a chat request: the client's fields, with the forced ones set."""
    body = _sent_fields(request)
    limit_name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    body.pop("max_tokens", None)
    body.pop("max_completion_tokens", None)
    body[limit_name] = max_tokens
    return _streamed(body, model=model)


def completion_body(request: CompletionRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    body = _sent_fields(request)
    body["max_tokens"] = max_tokens
    return _streamed(body, model=model)


def embedding_body(request: EmbeddingRequest, *, model: str) -> dict[str, Any]:
    body = _sent_fields(request)
    # The gateway shortens vectors to `dimensions` itself, from the model's full width.
    body.pop("dimensions", None)
    body["model"] = model
    body["encoding_format"] = "float"
    return body


def _sent_fields(
    request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest,
) -> dict[str, Any]:
    sent = request.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return {name: value for name, value in sent.items() if name not in _WITHHELD_FIELDS}


def _streamed(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    options = body.get("stream_options") or {}
    body["model"] = model
    body["stream"] = True
    body["stream_options"] = {**options, "include_usage": True}
    return body


# --- responses (pure) ------------------------------------------------------------------------


def read_error(document: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of OpenAI's `{"error": {...}}`; also vLLM's flat error object and
    llama.cpp's integer `code` (an HTTP status, not an error code)."""
    error = document.get("error", document)
    if isinstance(error, str):
        return error, None, None
    message = error["message"]
    param, code = error.get("param"), error.get("code")
    return (
        str(message),
        param if isinstance(param, str) else None,
        code if isinstance(code, str) else None,
    )


def read_usage(reported: dict[str, Any], *, into: Usage) -> None:
    """The upstream's own counts, in OpenAI's fields (details may be absent or null)."""
    prompt_details = reported.get("prompt_tokens_details") or {}
    completion_details = reported.get("completion_tokens_details") or {}
    into.prompt_tokens = int(reported.get("prompt_tokens") or 0)
    into.completion_tokens = int(reported.get("completion_tokens") or 0)
    into.cached_tokens = int(prompt_details.get("cached_tokens") or 0)
    into.reasoning_tokens = int(completion_details.get("reasoning_tokens") or 0)
    into.exact = True


def _generated_texts(choices: Any) -> list[str]:
    """The text a chunk's choices add: content, reasoning, tool-call names and arguments."""
    texts: list[str] = []
    for choice in choices:
        delta = choice.get("delta") or {}
        texts.extend(
            value
            for value in (choice.get("text"), delta.get("content"), delta.get("reasoning_content"))
            if isinstance(value, str)
        )
        for call in delta.get("tool_calls") or ():
            function = (call or {}).get("function") or {}
            texts.extend(
                value
                for value in (function.get("name"), function.get("arguments"))
                if isinstance(value, str)
            )
    return texts


def _vector(embedding: Any) -> np.ndarray:
    if isinstance(embedding, str):  # base64 of little-endian float32, as OpenAI encodes it
        return np.frombuffer(base64.b64decode(embedding, validate=True), dtype="<f4").astype(
            np.float32
        )
    return np.asarray(embedding, dtype=np.float32)


# --- bounds and estimates (pure) -------------------------------------------------------------


def chat_prompt_bound(request: ChatCompletionRequest) -> int:
    """Bytes bound tokens: every token of a byte-level BPE (and of SentencePiece with byte
    fallback) covers at least one UTF-8 byte, so a text of B bytes is at most B tokens."""
    text_bytes = sum(len(text.encode()) for text in _message_texts(request.messages))
    images = sum(_image_count(message) for message in request.messages)
    schemas = _schemas_json(request)
    bound = (
        text_bytes
        + MESSAGE_OVERHEAD_TOKENS * (len(request.messages) + 1)
        + IMAGE_TOKEN_BOUND * images
    )
    if schemas:
        bound += len(schemas.encode()) + TOOLS_OVERHEAD_TOKENS
    return bound


def completion_prompt_bound(request: CompletionRequest) -> int:
    """Counted once per prompt (not per `n`); a token array is exactly its length."""
    return sum(
        len(prompt) if isinstance(prompt, list) else len(prompt.encode()) + MESSAGE_OVERHEAD_TOKENS
        for prompt in _prompts(request)
    ) + len((request.suffix or "").encode())


def _prompts(request: CompletionRequest) -> list[str | list[int]]:
    prompt = request.prompt
    if isinstance(prompt, str):
        return [prompt]
    if _is_token_array(prompt):
        return [prompt]  # type: ignore[list-item]
    return list(prompt)  # type: ignore[arg-type]


def _input_count(request: EmbeddingRequest) -> int:
    single = isinstance(request.input, str) or _is_token_array(request.input)
    return 1 if single else len(request.input)


def _is_token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], int)


def _message_texts(messages: list[ChatMessage]) -> list[str]:
    """Every text a message carries into the prompt: content, names, earlier tool calls."""
    texts: list[str] = []
    for message in messages:
        texts.append(message.role)
        if isinstance(message.content, str):
            texts.append(message.content)
        elif message.content:
            texts.extend(part.text for part in message.content if part.text)
        texts.extend(text for text in (message.name, message.tool_call_id) if text)
        for call in message.tool_calls or ():
            texts.extend((call.id, call.function.name, call.function.arguments))
    return texts


def _image_count(message: ChatMessage) -> int:
    if not isinstance(message.content, list):
        return 0
    return sum(1 for part in message.content if part.type == "image_url")


def _schemas_json(request: ChatCompletionRequest) -> str:
    """The JSON of the tool definitions and response schema, which templates render as text."""
    parts: list[Any] = [
        tool.model_dump(mode="json", exclude_none=True) for tool in request.tools or ()
    ]
    if request.response_format and request.response_format.json_schema:
        parts.append(request.response_format.json_schema.model_dump(mode="json", by_alias=True))
    return json.dumps(parts, ensure_ascii=False) if parts else ""
