"""POST /v1/messages (Anthropic's Messages API) as a translation onto the chat serving core.

A Messages request becomes the ChatCompletionRequest it means (validated like any chat request),
`chat.create` serves and bills it on whatever route the model has, and its answer is translated
back: a message object, or Anthropic's stream of events (apps.gateway.serving.message_events).

What does not translate, and why:
- `top_k` reaches the backends that have it: the local engine's sampler, Anthropic, Gemini
  (`topK`). OpenAI-compatible routes get it in the body as the client sent it, as every field
  those routes do not know (vLLM and llama.cpp's server apply it; OpenAI refuses it with a 400).
- `stop_sequence` names the stop sequence that ended the text where the backend says which one
  matched (the local engine, Anthropic, vLLM-style servers: the choice's `stop_reason`). Gemini
  reports a stop sequence and a natural end alike (finishReason STOP), so there it is
  `end_turn` with `stop_sequence` null.
- Anthropic's `input_tokens` excludes cached input (`cache_read_input_tokens`); the chat core
  counts cached tokens inside `prompt_tokens`, so they are subtracted here. `count_tokens`
  answers the whole prompt (what caching may later split into read and uncached input).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from apps.gateway.serving import chat
from apps.gateway.serving.common import CallContext, Priced, api_error_from, resolve_model
from apps.gateway.serving.content import check_tool_messages, content_check
from apps.gateway.serving.message_events import (
    EventStream,
    message_events,
    message_usage,
    stop_fields,
)
from apps.protocol import errors
from apps.protocol.anthropic import (
    ContentBlock,
    CountTokensRequest,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)
from apps.protocol.openai import ChatCompletionRequest, request_validate
from apps.providers.errors import ProviderError
from apps.providers.registry import route_providers

ENDPOINT = "messages"  # as the call is recorded (UsageRecord.endpoint)


@runtime_checkable
class _PromptCounter(Protocol):
    """A provider that can count a request's prompt: exactly (the local engine with the model's
    template, Anthropic's count_tokens, Gemini's countTokens) or, on OpenAI-compatible routes,
    as an estimate with the model family's tokenizer (those servers cannot count)."""

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int: ...


async def create(request: MessagesRequest, ctx: CallContext) -> Priced | EventStream:
    """A finished, billed message, or its events (the stream settles the call itself)."""
    result = await chat.create(chat_request(request), ctx, endpoint=ENDPOINT)
    if isinstance(result, Priced):
        return Priced(message_from(result.body, message_id=message_id(ctx)), result.cost_micros)
    return message_events(result, message_id=message_id(ctx), model=request.model)


async def count_tokens(request: CountTokensRequest, ctx: CallContext) -> dict[str, Any]:
    """`{"input_tokens": n}`: the prompt tokens the same Messages request would be billed for.

    The request is translated and checked as a real call would be, so that an invalid one gets
    the same 400 it would get from /v1/messages; counting is free (no hold, no usage record)
    but admitted and rate limited as any call. The first route that can count answers, in the
    catalog's order: the local engine, Anthropic and Gemini count exactly; an OpenAI-compatible
    route answers the gateway's estimate (OpenAI has no counting endpoint).
    """
    translated = chat_request(request)
    entry = resolve_model(request.model, endpoint=chat.ENDPOINT)
    check_tool_messages(translated.messages)
    content_check(translated.messages, entry)
    last_failure: ProviderError | None = None
    for provider in await route_providers(entry):
        if isinstance(provider, _PromptCounter):
            try:
                return {"input_tokens": await provider.count_prompt_tokens(translated)}
            except ProviderError as failure:
                if not failure.retryable:
                    raise api_error_from(failure) from None
                last_failure = failure  # a route down: the next one may count
    if last_failure is not None:
        raise api_error_from(last_failure)
    raise errors.invalid_value(
        f"Token counting is not available for the model `{entry.id}`: none of its routes "
        "can count tokens.",
        param="model",
        code="count_tokens_unavailable",
    )


def message_id(ctx: CallContext) -> str:
    return "msg_" + ctx.request_id.removeprefix("req_")


# --- Anthropic request → OpenAI chat request ------------------------------------------------


def chat_request(request: MessagesRequest | CountTokensRequest) -> ChatCompletionRequest:
    """The chat request a Messages request means, validated as the chat endpoint validates."""
    document: dict[str, Any] = {"model": request.model, "messages": _chat_messages(request)}
    if request.tools:
        document["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.input_schema,
                },
            }
            for tool in request.tools
        ]
    if request.tool_choice is not None:
        document.update(_tool_choice(request.tool_choice))
    if isinstance(request, MessagesRequest):
        document.update(_sampling(request))
    return request_validate(document, ChatCompletionRequest)


def _sampling(request: MessagesRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {"max_tokens": request.max_tokens}
    if request.stop_sequences:
        fields["stop"] = request.stop_sequences
    if request.temperature is not None:
        fields["temperature"] = request.temperature
    if request.top_p is not None:
        fields["top_p"] = request.top_p
    if request.top_k is not None:
        fields["top_k"] = request.top_k
    if request.metadata is not None and request.metadata.user_id is not None:
        fields["user"] = request.metadata.user_id
    if request.stream:
        # The usage chunk carries the final counts that message_delta reports.
        fields["stream"] = True
        fields["stream_options"] = {"include_usage": True}
    return fields


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if choice.type == "tool":
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    if choice.disable_parallel_tool_use:
        fields["parallel_tool_calls"] = False
    return fields


def _chat_messages(request: MessagesRequest | CountTokensRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if isinstance(request.system, str) and request.system:
        messages.append({"role": "system", "content": request.system})
    elif isinstance(request.system, list) and request.system:
        parts = [{"type": "text", "text": block.text} for block in request.system]
        messages.append({"role": "system", "content": parts})
    for index, message in enumerate(request.messages):
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
        elif message.role == "user":
            messages.extend(_user_turn(message.content, index))
        else:
            messages.append(_assistant_turn(message.content, index))
    return messages


def _user_turn(blocks: list[ContentBlock], index: int) -> list[dict[str, Any]]:
    """Tool results first (OpenAI wants them right after the calls), then the user's parts."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for position, block in enumerate(blocks):
        where = f"messages.{index}.content.{position}"
        if isinstance(block, ToolResultBlock):
            results.append(_tool_message(block, where))
        elif isinstance(block, TextBlock | ImageBlock):
            parts.append(_part(block))
        else:
            raise _misplaced(block.type, "user", where)
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _assistant_turn(blocks: list[ContentBlock], index: int) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for position, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input, separators=(",", ":"))
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        elif not isinstance(block, ThinkingBlock):  # earlier reasoning is not replayed
            raise _misplaced(block.type, "assistant", f"messages.{index}.content.{position}")
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        turn["tool_calls"] = calls
    elif not texts:
        turn["content"] = ""
    return turn


def _tool_message(block: ToolResultBlock, where: str) -> dict[str, Any]:
    if isinstance(block.content, str):
        text = block.content
    else:
        if any(isinstance(part, ImageBlock) for part in block.content):
            raise errors.invalid_value(
                f"{where}.content: images in tool results are not supported.", param=None
            )
        text = "\n".join(part.text for part in block.content if isinstance(part, TextBlock))
    if block.is_error:
        text = f"Error: {text}"  # the chat core has no error flag on a tool result
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _part(block: TextBlock | ImageBlock) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    source = block.source
    url = source.url if source.type == "url" else f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _misplaced(block_type: str, role: str, where: str) -> errors.APIError:
    return errors.invalid_value(
        f"{where}: a `{block_type}` block cannot be part of a message with role `{role}`.",
        param=None,
    )


# --- OpenAI chat completion → Anthropic message ---------------------------------------------


def message_from(completion: dict[str, Any], *, message_id: str) -> dict[str, Any]:
    choice = completion["choices"][0]
    reply = choice["message"]
    content: list[dict[str, Any]] = []
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call["function"]
        content.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function["name"],
                "input": json.loads(function["arguments"]),
            }
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        **stop_fields(choice["finish_reason"], choice.get("stop_reason")),
        "usage": message_usage(completion["usage"]),
    }
