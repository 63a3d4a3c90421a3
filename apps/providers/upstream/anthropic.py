"""Chat on Anthropic's Messages API (`POST /v1/messages`, always streamed).

Two pure mappings and a thin transport, as every upstream provider:

- `messages_body`: a validated OpenAI chat request -> the Messages API body. What Anthropic cannot
  do is refused with a 400 naming the parameter before anything is sent.
- `StreamTranslation`: each Messages stream event -> OpenAI chunks, keeping a `Usage` current.
- `AnthropicProvider`: POSTs the body through `http.opened` and feeds the events through.

Choices made where the two APIs differ (each a place a client could be surprised):

- temperature: OpenAI's range is 0..2, Anthropic's 0..1, both defaulting to 1. Values above 1 are
  clamped to 1 rather than the range scaled: a client's explicit 0.2 or 0.7 then means what it
  says on both APIs, and 1 (the common explicit default) stays the default.
- seed is ignored: OpenAI itself documents it as best effort ("determinism is not guaranteed"),
  and SDKs and eval harnesses send it by default; refusing it would break them for no gain.
- n > 1, logprobs, top_logprobs > 0, logit_bias and non-zero presence/frequency penalties have no
  Anthropic equivalent: 400 `unsupported_parameter`, never a silent drop.
- response_format json_object / json_schema: Anthropic's native structured output exists only on
  recent models and cannot express "any JSON object", so the schema becomes a tool,
  `json_response`, that the model is made to call; its input streams back as the message's
  content, and the call itself is never shown as a tool call.
- system and developer messages, wherever they sit, become Anthropic's top-level `system`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from apps.catalog.entries import CatalogEntry, UpstreamRoute
from apps.protocol.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ContentPart,
    EmbeddingRequest,
    FunctionDefinition,
)
from apps.providers.base import Chunk, Embeddings, Usage
from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.tokens import count_tokens, embedding_input_bound

ANTHROPIC_VERSION = "2023-06-01"
UPSTREAM = "Anthropic"
# The tool a response_format becomes; a client tool of that name is refused (see _response_tool).
RESPONSE_TOOL = "json_response"
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# prompt_token_bound: every token is at least one UTF-8 byte, so bytes bound the text's tokens.
# Anthropic documents an image's cost as width * height / 750, about 1,600 tokens for the
# largest image it keeps unscaled (1568 px on the long side), and a tool-use system prompt of
# up to 530 tokens; the rest is headroom for turn markers, which it does not document.
IMAGE_TOKENS = 1600
TOOL_PROMPT_TOKENS = 600
MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 16

# What Anthropic's count_tokens takes of a Messages body (sampling fields are refused there).
_COUNTED_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice"})

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# --- OpenAI request -> Messages API body ------------------------------------------------------


def messages_body(request: ChatCompletionRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The Messages API body of `request`; ProviderError 400 for what Anthropic cannot do."""
    _refuse_unsupported(request)
    system, messages = _conversation(request.messages)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,  # required by Anthropic: always sent
        "messages": messages,
        "stream": True,
    }
    if system:
        body["system"] = system
    return body | _sampling(request) | _tooling(request)


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    unsupported = {
        "n": request.n > 1,
        "logprobs": bool(request.logprobs),
        "top_logprobs": bool(request.top_logprobs),
        "logit_bias": bool(request.logit_bias),
        "presence_penalty": bool(request.presence_penalty),
        "frequency_penalty": bool(request.frequency_penalty),
    }
    for param, is_used in unsupported.items():
        if is_used:
            raise _unsupported(param)


def _unsupported(param: str) -> ProviderError:
    return ProviderError(
        f"The parameter '{param}' is not supported by this model's upstream (Anthropic).",
        status=400,
        code="unsupported_parameter",
        param=param,
    )


def _invalid(message: str, *, param: str) -> ProviderError:
    return ProviderError(message, status=400, code="invalid_value", param=param)


def _sampling(request: ChatCompletionRequest) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)  # clamped: see the module's doc
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.stop_list:
        body["stop_sequences"] = request.stop_list
    if request.user:
        body["metadata"] = {"user_id": request.user}
    return body


# Messages: Anthropic takes alternating user/assistant turns, the first a user's; tool results
# are content blocks of a user turn, ahead of any text in it.

Turn = dict[str, Any]


def _conversation(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[Turn]]:
    """(system blocks, turns) of OpenAI's messages."""
    system: list[dict[str, Any]] = []
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            system.extend(_text_blocks(message, index))
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message, index)
        if not blocks:
            continue  # an empty turn would be refused; the turns around it may merge
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        raise _invalid(
            "Anthropic requires the conversation to start with a user message (after any "
            "system messages).",
            param="messages",
        )
    for turn in turns:
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")  # stable
    return system, turns


def _blocks(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [_tool_result(message, index)]
    parts = _parts(message.content)
    blocks = _content_blocks(parts, param=f"messages[{index}].content", role=message.role)
    for position, call in enumerate(message.tool_calls or []):
        param = f"messages[{index}].tool_calls[{position}].function.arguments"
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": _arguments(call.function.arguments, param=param),
            }
        )
    return blocks


def _parts(content: str | list[ContentPart] | None) -> list[ContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [ContentPart(type="text", text=content)]
    return content


def _text_blocks(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    blocks = []
    for position, part in enumerate(_parts(message.content)):
        if part.type != "text":
            raise _invalid(
                f"A {message.role} message can hold only text parts.",
                param=f"messages[{index}].content[{position}].type",
            )
        if part.text:
            blocks.append(_with_cache_control({"type": "text", "text": part.text}, part))
    return blocks


def _content_blocks(parts: list[ContentPart], *, param: str, role: str) -> list[dict[str, Any]]:
    blocks = [
        _content_block(part, f"{param}[{position}]", role=role)
        for position, part in enumerate(parts)
    ]
    return [block for block in blocks if block is not None]


def _content_block(part: ContentPart, param: str, *, role: str) -> dict[str, Any] | None:
    """One content part as an Anthropic block; None for empty text, which Anthropic refuses."""
    if part.type in ("text", "refusal"):
        text = part.text if part.type == "text" else (part.model_extra or {}).get("refusal")
        if not text:
            return None
        return _with_cache_control({"type": "text", "text": str(text)}, part)
    if part.type == "image_url" and part.image_url is not None and role == "user":
        source = _image_source(part.image_url.url, param=f"{param}.image_url.url")
        return _with_cache_control({"type": "image", "source": source}, part)
    raise _invalid(
        f"Content parts of type '{part.type}' are not supported in {role} messages by this "
        "model's upstream (Anthropic).",
        param=f"{param}.type",
    )


def _with_cache_control(block: dict[str, Any], part: ContentPart) -> dict[str, Any]:
    # Clients that know Anthropic mark prompt-cache breakpoints on OpenAI parts; keep them.
    marker = (part.model_extra or {}).get("cache_control")
    return block | {"cache_control": marker} if marker else block


def _image_source(url: str, *, param: str) -> dict[str, Any]:
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    header, is_data, data = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if url.startswith("data:") and is_data and encoding == "base64":
        if media_type not in IMAGE_MEDIA_TYPES:
            raise _invalid(
                f"Images of type '{media_type}' are not supported by this model's upstream "
                f"(Anthropic); send one of {', '.join(sorted(IMAGE_MEDIA_TYPES))}.",
                param=param,
            )
        return {"type": "base64", "media_type": media_type, "data": data}
    raise _invalid(
        "An image must be an http(s) URL or a base64 data URL (data:image/png;base64,...).",
        param=param,
    )


def _arguments(arguments: str, *, param: str) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` must be."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _invalid("The arguments of a tool call must be a JSON object.", param=param)
    return value


def _tool_result(message: ChatMessage, index: int) -> dict[str, Any]:
    if not message.tool_call_id:
        raise _invalid(
            f"Missing required parameter: 'messages[{index}].tool_call_id'.",
            param=f"messages[{index}].tool_call_id",
        )
    content: str | list[dict[str, Any]]
    if isinstance(message.content, list):
        param = f"messages[{index}].content"
        content = _content_blocks(message.content, param=param, role="user")
    else:
        content = message.content or ""
    return {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}


# Tools, tool_choice and response_format: one place, as they constrain each other.


def _tooling(request: ChatCompletionRequest) -> dict[str, Any]:
    tools = [_tool(tool.function) for tool in request.tools or []]
    response_tool = _response_tool(request)
    if response_tool is not None:
        tools.append(response_tool)
    if not tools:
        return {}
    choice = _tool_choice(request, has_response_tool=response_tool is not None)
    return {"tools": tools, "tool_choice": choice} if choice else {"tools": tools}


def _tool(function: FunctionDefinition) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": function.name,
        "input_schema": function.parameters or {"type": "object", "properties": {}},
    }
    if function.description:
        tool["description"] = function.description
    return tool


def answers_as_tool(request: ChatCompletionRequest) -> bool:
    """Whether the answer comes as the input of RESPONSE_TOOL (a JSON response_format)."""
    return request.response_format is not None and request.response_format.type != "text"


def _response_tool(request: ChatCompletionRequest) -> dict[str, Any] | None:
    response_format = request.response_format
    if response_format is None or not answers_as_tool(request):
        return None
    if any(tool.function.name == RESPONSE_TOOL for tool in request.tools or []):
        raise _invalid(
            f"A tool named '{RESPONSE_TOOL}' cannot be combined with 'response_format' on this "
            "model: the name is taken by the structured answer.",
            param="response_format",
        )
    schema: dict[str, Any] = {"type": "object"}  # json_object, or a json_schema without one
    description = "Give the answer as this tool's input."
    if response_format.type == "json_schema" and response_format.json_schema is not None:
        schema = response_format.json_schema.schema_ or schema
        description = response_format.json_schema.description or description
    if schema.get("type") != "object":
        raise _invalid(
            "This model's upstream (Anthropic) takes only JSON schemas of an object.",
            param="response_format",
        )
    return {"name": RESPONSE_TOOL, "description": description, "input_schema": schema}


def _tool_choice(request: ChatCompletionRequest, *, has_response_tool: bool) -> dict[str, Any]:
    """Anthropic's tool_choice ({} for its default); with a response_format some tool must be
    called: the client's (when it may call them) or the answer's."""
    choice = request.tool_choice
    may_call_client_tools = bool(request.tools) and choice != "none"
    if has_response_tool and not may_call_client_tools:
        anthropic: dict[str, Any] = {"type": "tool", "name": RESPONSE_TOOL}
    elif has_response_tool and choice in (None, "auto", "required"):
        anthropic = {"type": "any"}
    elif choice is None:
        anthropic = {"type": "auto"} if request.parallel_tool_calls is False else {}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "auto":
        anthropic = {"type": "auto"}
    elif choice == "required":
        anthropic = {"type": "any"}
    else:
        anthropic = {"type": "tool", "name": choice.function.name}
    if anthropic and request.parallel_tool_calls is False:
        anthropic["disable_parallel_tool_use"] = True
    return anthropic


# --- Messages stream events -> OpenAI chunks + usage ------------------------------------------


def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> Chunk:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


class StreamTranslation:
    """The state of one streamed message: which blocks are tool calls (and their OpenAI
    index), whether the role and the finish have been sent, the usage so far."""

    def __init__(self, *, usage: Usage, answers_as_tool: bool = False) -> None:
        self.usage = usage
        self.is_done = False
        self._answers_as_tool = answers_as_tool  # a client's own tool may have that name too
        self._tool_indexes: dict[int, int] = {}  # Anthropic block index -> tool_calls[].index
        self._answer_blocks: set[int] = set()  # blocks of the response_format tool
        self._has_role = False
        self._has_finished = False
        self._counts: dict[str, int] = {}
        self._estimated_tokens = 0

    def translate(self, event: dict[str, Any]) -> list[Chunk]:
        """The chunks one event becomes; ProviderError for an `error` event."""
        kind = event.get("type")
        if kind == "message_start":
            return self._message_start(event["message"])
        if kind == "content_block_start":
            return self._block_start(event["index"], event["content_block"])
        if kind == "content_block_delta":
            return self._block_delta(event["index"], event["delta"])
        if kind == "message_delta":
            return self._message_delta(event.get("delta") or {}, event.get("usage") or {})
        if kind == "message_stop":
            self.is_done = True
        elif kind == "error":
            raise stream_error(event.get("error") or {})
        return []  # ping, content_block_stop, and event types added after this was written

    def _message_start(self, message: dict[str, Any]) -> list[Chunk]:
        self.usage.upstream_model = message.get("model") or self.usage.upstream_model
        self.usage.upstream_request_id = self.usage.upstream_request_id or message.get("id", "")
        # output_tokens here is a placeholder until message_delta; the text is counted meanwhile.
        self._record({**(message.get("usage") or {}), "output_tokens": None})
        return []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[Chunk]:
        if block.get("type") == "text":
            return self._text_start(block.get("text") or "")
        if block.get("type") != "tool_use":
            return []  # thinking and server-tool blocks: nothing OpenAI's chunk can carry
        if self._answers_as_tool and block.get("name") == RESPONSE_TOOL:
            self._answer_blocks.add(index)
            return self._text_start("")
        tool_index = self._tool_indexes[index] = len(self._tool_indexes)
        self._count(block.get("name") or "")
        call = {
            "index": tool_index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        if self._has_role:
            return [_choice({"tool_calls": [call]})]
        # No empty string as content here: openai-python would report an empty text.
        self._has_role = True
        return [_choice({"role": "assistant", "content": None, "tool_calls": [call]})]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[Chunk]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._content(delta.get("text") or "")] if delta.get("text") else []
        if kind != "input_json_delta" or not delta.get("partial_json"):
            return []
        partial = delta["partial_json"]
        if index in self._answer_blocks:
            return [self._content(partial)]
        if index not in self._tool_indexes:
            return []
        self._count(partial)
        call = {"index": self._tool_indexes[index], "function": {"arguments": partial}}
        return [_choice({"tool_calls": [call]})]

    def _message_delta(self, delta: dict[str, Any], usage: dict[str, Any]) -> list[Chunk]:
        self._record(usage)  # cumulative counts; input fields only on newer API versions
        self.usage.exact = self._counts.get("output_tokens") is not None
        stop_reason = delta.get("stop_reason")
        if stop_reason is None or self._has_finished:
            return []
        self._has_finished = True
        finish_reason = _FINISH_REASONS.get(stop_reason, "stop")
        if finish_reason == "tool_calls" and not self._tool_indexes:
            finish_reason = "stop"  # only the response_format tool was called: an answer
        content = {} if self._has_role else {"content": ""}
        chunk = _choice(self._with_role(content), finish_reason)
        if stop_reason == "stop_sequence" and isinstance(delta.get("stop_sequence"), str):
            # Which stop sequence ended the text, as vLLM reports it on OpenAI's choices.
            chunk["choices"][0]["stop_reason"] = delta["stop_sequence"]
        return [chunk]

    def _text_start(self, text: str) -> list[Chunk]:
        if self._has_role and not text:
            return []  # a later text block: nothing to say until its first delta
        return [self._content(text)]

    def _content(self, text: str) -> Chunk:
        self._count(text)
        return _choice(self._with_role({"content": text}))

    def _with_role(self, delta: dict[str, Any]) -> dict[str, Any]:
        if self._has_role:
            return delta
        self._has_role = True
        return {"role": "assistant", **delta}

    def _count(self, text: str) -> None:
        """Keep completion_tokens current from the text until Anthropic's count arrives."""
        if not text or self.usage.exact:
            return
        # Counted piece by piece, not the whole text again: linear in the length of the answer.
        self._estimated_tokens += count_tokens(text, family="anthropic")
        self.usage.completion_tokens = self._estimated_tokens

    def _record(self, counts: dict[str, Any]) -> None:
        for name, value in counts.items():
            if isinstance(value, int) and not isinstance(value, bool):
                self._counts[name] = value
        normalize_usage(self._counts, usage=self.usage, estimated=self._estimated_tokens)


def normalize_usage(counts: dict[str, int], *, usage: Usage, estimated: int) -> None:
    """Anthropic's counts as OpenAI's: its input_tokens leave out the cache reads and writes
    that OpenAI's prompt_tokens include (cached_tokens being the reads)."""
    cache_read = counts.get("cache_read_input_tokens", 0)
    cache_creation = counts.get("cache_creation_input_tokens", 0)
    usage.prompt_tokens = counts.get("input_tokens", 0) + cache_read + cache_creation
    usage.cached_tokens = cache_read
    usage.completion_tokens = counts.get("output_tokens", estimated)
    if cache_creation:
        usage.extra["cache_creation_input_tokens"] = cache_creation


def stream_error(error: dict[str, Any]) -> ProviderError:
    """The ProviderError of an `error` event in a stream (the HTTP status was already 200)."""
    kind = str(error.get("type") or "api_error")
    message = f"{UPSTREAM} failed mid-stream ({kind}): {error.get('message') or kind}"
    if kind == "rate_limit_error":
        return ProviderError(message, status=503, code="upstream_rate_limited", retryable=True)
    is_transient = kind in ("overloaded_error", "api_error", "timeout_error")
    return ProviderError(message, status=502, code="upstream_error", retryable=is_transient)


def read_error(body: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of Anthropic's error body {"type": "error", "error": {...}}."""
    return str(body["error"]["message"]), None, None


# --- prompt_token_bound -----------------------------------------------------------------------


def chat_prompt_bound(request: ChatCompletionRequest) -> int:
    bound = REQUEST_OVERHEAD_TOKENS
    for message in request.messages:
        bound += MESSAGE_OVERHEAD_TOKENS + _utf8_len(message.tool_call_id or "")
        for part in _parts(message.content):
            is_image = part.type == "image_url"
            bound += IMAGE_TOKENS if is_image else _utf8_len(part.text or "")
        for call in message.tool_calls or []:
            bound += _utf8_len(call.id + call.function.name + call.function.arguments)
    tools = [tool.model_dump(exclude_none=True) for tool in request.tools or []]
    if request.response_format is not None and answers_as_tool(request):
        tools.append(request.response_format.model_dump(exclude_none=True, by_alias=True))
    if tools:
        bound += TOOL_PROMPT_TOKENS + _utf8_len(json.dumps(tools))
    return bound


def _completion_prompt_bound(request: CompletionRequest) -> int:
    prompts: Iterable[Any] = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    return sum(_prompt_length(prompt) for prompt in prompts)


def _prompt_length(prompt: str | int | list[int]) -> int:
    """Bytes of a text, or the ids of a token array (one id: the prompt is that array)."""
    if isinstance(prompt, str):
        return _utf8_len(prompt)
    return len(prompt) if isinstance(prompt, list) else 1


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


# --- The provider -----------------------------------------------------------------------------


class AnthropicProvider:
    """One catalog entry on an Anthropic route (api.anthropic.com, or a proxy of it)."""

    name = "anthropic"

    def __init__(
        self, entry: CatalogEntry, route: UpstreamRoute, *, base_url: str, api_key: str
    ) -> None:
        self._entry = entry
        self._route = route
        self._base_url = base_url  # as Anthropic's SDKs take it: without /v1
        self._api_key = api_key

    def is_available(self) -> bool:
        """Configured: a base URL, and the key when the route names one."""
        return bool(self._base_url) and (bool(self._api_key) or not self._route.api_key_env)

    def prompt_token_bound(
        self, request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    ) -> int:
        if isinstance(request, EmbeddingRequest):
            return embedding_input_bound(request)
        if isinstance(request, CompletionRequest):
            return _completion_prompt_bound(request)
        return chat_prompt_bound(request)

    async def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        body = messages_body(request, model=self._route.model, max_tokens=max_tokens)
        usage.provider = self.name
        translation = StreamTranslation(usage=usage, answers_as_tool=answers_as_tool(request))
        async with http.opened(
            self._base_url,
            "v1/messages",
            body=body,
            headers=self._headers(),
            read_error=read_error,
            upstream=UPSTREAM,
        ) as response:
            usage.upstream_request_id = response.headers.get("request-id", "")
            # Read to the body's end (nothing follows message_stop): the connection goes back
            # to the pool instead of being closed half-read.
            async for _, data in http.server_sent_events(response):
                for chunk in _translated(translation, http.loads(data, upstream=UPSTREAM)):
                    yield chunk
        if not translation.is_done:
            raise http.malformed(UPSTREAM, "a stream that ended before message_stop")

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        """The prompt's input tokens as Anthropic counts them (`count_tokens`, which is free)."""
        body = messages_body(request, model=self._route.model, max_tokens=1)
        counted = {name: value for name, value in body.items() if name in _COUNTED_FIELDS}
        async with http.opened(
            self._base_url,
            "v1/messages/count_tokens",
            body=counted,
            headers={**self._headers(), "accept": "application/json"},
            read_error=read_error,
            upstream=UPSTREAM,
        ) as response:
            document = await http.read_json(response, upstream=UPSTREAM)
        tokens = document.get("input_tokens") if isinstance(document, dict) else None
        if type(tokens) is not int:
            raise http.malformed(UPSTREAM, "a count_tokens answer without input_tokens")
        return tokens

    def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        return http.refused_stream(
            ProviderError(
                f"The model `{self._entry.id}` serves chat completions only "
                "(Anthropic has no legacy completions API).",
                status=400,
                code="unsupported_endpoint",
            )
        )

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        raise ProviderError(
            f"The model `{self._entry.id}` cannot make embeddings (Anthropic has no "
            "embeddings API).",
            status=400,
            code="unsupported_endpoint",
        )

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, "accept": "text/event-stream"}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers


def _translated(translation: StreamTranslation, event: Any) -> list[Chunk]:
    try:
        return translation.translate(event)
    except (KeyError, TypeError, AttributeError):  # JSON, but not in the reference's shape
        raise http.malformed(UPSTREAM, "an event not shaped as the Messages API's") from None
