"""POST /v1/chat/completions on any provider, streamed or not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponseBase, JsonResponse

from apps.catalog.entries import CatalogEntry
from apps.gateway import errors, sse
from apps.gateway.metering import Meter, meter_open
from apps.gateway.protocol import ChatCompletionRequest, ChatMessage
from apps.gateway.serving.common import (
    CallContext,
    api_error_from,
    cost_header,
    merge_streams,
    resolve_model,
    usage_body,
)
from apps.gateway.serving.generation import Tally, close_meter_safely
from apps.providers.errors import ProviderError
from apps.providers.registry import provider_for

logger = logging.getLogger(__name__)

ENDPOINT = "chat.completions"
SYSTEM_FINGERPRINT = "fp_plugsky_local"
# Chat templates add a few tokens per message; UTF-8 bytes bound the text's tokens from above.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
# Some templates add a default system prompt (Qwen's is ~20 tokens) when the request has none.
_TEMPLATE_TOKENS_PER_REQUEST = 64


async def create(request: ChatCompletionRequest, ctx: CallContext) -> HttpResponseBase:
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    _reject_unsupported(request, entry)
    messages = [_engine_message(message, index) for index, message in enumerate(request.messages)]
    max_output = min(request.output_limit or entry.context_length, entry.context_length)
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=ENDPOINT,
        entry=entry,
        max_prompt_tokens=min(_prompt_token_bound(request.messages), entry.context_length),
        max_completion_tokens=max_output * request.n,
        is_stream=bool(request.stream),
        end_user=request.user or "",
        is_tester=ctx.is_tester,
    )
    streams = [
        provider_for(entry).chat_stream(entry, _engine_body(request, messages, choice))
        for choice in range(request.n)
    ]
    view = _ChunkView(ctx=ctx, entry=entry, request=request)
    if request.stream:
        return sse.streaming_response(_stream_events(streams, meter, view))
    return await _collect(streams, meter, view)


def _reject_unsupported(request: ChatCompletionRequest, entry: CatalogEntry) -> None:
    if request.stream_options is not None and not request.stream:
        raise errors.invalid_value(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if request.tools:
        raise errors.invalid_value(
            f"The model `{entry.id}` does not support tools yet.", param="tools"
        )


def _prompt_token_bound(messages: list[ChatMessage]) -> int:
    """An upper bound on prompt tokens without tokenizing: every token covers >= 1 UTF-8 byte."""
    size = _TEMPLATE_TOKENS_PER_REQUEST
    for message in messages:
        size += _TEMPLATE_TOKENS_PER_MESSAGE + len(str(message.content or "").encode())
        for call in message.tool_calls or []:
            size += len(call.function.name.encode()) + len(call.function.arguments.encode())
    return size


def _engine_message(message: ChatMessage, index: int) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role, "content": _text_content(message, index)}
    if message.name:
        body["name"] = message.name
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        body["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    return body


def _text_content(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for part_index, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise errors.invalid_value(
                f"Content parts of type '{part.type}' are not supported by this model.",
                param=f"messages[{index}].content[{part_index}]",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _engine_body(
    request: ChatCompletionRequest, messages: list[dict[str, Any]], choice: int
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "timings_per_token": True,  # exact token counts with every chunk
        # OpenAI samples with temperature and top_p only: switch llama.cpp's extra samplers off.
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "top_k": 0,
        "min_p": 0.0,
    }
    if request.output_limit is not None:
        body["max_tokens"] = request.output_limit
    if request.stop is not None:
        body["stop"] = request.stop_list
    if request.seed is not None:
        body["seed"] = request.seed + choice  # n choices: independent, yet reproducible
    if request.presence_penalty or request.frequency_penalty:
        body["presence_penalty"] = request.presence_penalty or 0.0
        body["frequency_penalty"] = request.frequency_penalty or 0.0
        body["repeat_last_n"] = -1  # over the whole output, as OpenAI applies them
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs or 0
    if request.logit_bias:
        body["logit_bias"] = request.logit_bias
    return body


@dataclass
class _ChunkView:
    """Turns engine chunks into the chunks and message OpenAI clients expect."""

    ctx: CallContext
    entry: CatalogEntry
    request: ChatCompletionRequest
    started: set[int] = field(default_factory=set)

    @property
    def completion_id(self) -> str:
        return "chatcmpl-" + self.ctx.request_id.removeprefix("req_")

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.ctx.created,
            "model": self.entry.id,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if self.request.include_usage:
            chunk["usage"] = None
        return chunk

    def convert(self, index: int, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """Zero or more client chunks for one engine chunk of choice `index`."""
        out: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or []:
            delta = {key: value for key, value in choice.get("delta", {}).items() if value}
            delta.pop("role", None)
            if index not in self.started:
                self.started.add(index)
                out.append(self._choice_chunk(index, {"role": "assistant", "content": ""}))
            finish_reason = choice.get("finish_reason")
            logprobs = choice.get("logprobs") if self.request.logprobs else None
            if delta or finish_reason or logprobs:
                out.append(self._choice_chunk(index, delta, finish_reason, logprobs))
        return out

    def _choice_chunk(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        choice = {
            "index": index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }
        return self.envelope([choice])


async def _stream_events(
    streams: list[AsyncIterator[dict[str, Any]]], meter: Meter, view: _ChunkView
) -> AsyncIterator[bytes]:
    tally = Tally(samples_per_prompt=view.request.n)
    try:
        async for index, chunk in merge_streams(streams):
            tally.observe(index, chunk)
            for out in view.convert(index, chunk):
                yield sse.event(out)
    except ProviderError as failure:
        await close_meter_safely(meter, tally, status=failure.status, error_code=failure.code or "")
        yield sse.event(api_error_from(failure).body())
        return
    except (asyncio.CancelledError, GeneratorExit):  # the client went away: bill what ran
        await close_meter_safely(
            meter, tally, status=499, error_code="client_disconnected", client_disconnected=True
        )
        raise
    except Exception:
        logger.exception("chat stream %s failed", meter.request_id)
        await close_meter_safely(meter, tally, status=500, error_code="internal_error")
        yield sse.event(errors.internal_error().body())
        return
    cost = await close_meter_safely(meter, tally, status=200)
    if view.request.include_usage:
        final = view.envelope([])
        final["usage"] = usage_body(tally.prompt_tokens, tally.completion_tokens, cost)
        yield sse.event(final)
    yield sse.DONE


async def _collect(
    streams: list[AsyncIterator[dict[str, Any]]], meter: Meter, view: _ChunkView
) -> HttpResponseBase:
    tally = Tally(samples_per_prompt=view.request.n)
    choices = {index: _Assembled() for index in range(len(streams))}
    try:
        async for index, chunk in merge_streams(streams):
            tally.observe(index, chunk)
            for choice in chunk.get("choices") or []:
                choices[index].add(choice)
    except ProviderError as failure:
        await close_meter_safely(meter, tally, status=failure.status, error_code=failure.code or "")
        raise api_error_from(failure) from None
    except (asyncio.CancelledError, GeneratorExit):
        await close_meter_safely(
            meter, tally, status=499, error_code="client_disconnected", client_disconnected=True
        )
        raise
    cost = await close_meter_safely(meter, tally, status=200)
    body = {
        "id": view.completion_id,
        "object": "chat.completion",
        "created": view.ctx.created,
        "model": view.entry.id,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            choices[index].as_choice(index, with_logprobs=bool(view.request.logprobs))
            for index in sorted(choices)
        ],
        "usage": usage_body(tally.prompt_tokens, tally.completion_tokens, cost),
    }
    response = JsonResponse(body)
    response["x-plugsky-cost"] = cost_header(cost)
    return response


@dataclass
class _Assembled:
    """One choice of a non-streamed completion, assembled from its chunks."""

    content: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self.content.append(delta["content"])
        self.logprobs.extend((choice.get("logprobs") or {}).get("content") or [])
        self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def as_choice(self, index: int, *, with_logprobs: bool) -> dict[str, Any]:
        return {
            "index": index,
            "message": {"role": "assistant", "content": "".join(self.content), "refusal": None},
            "logprobs": {"content": self.logprobs, "refusal": None} if with_logprobs else None,
            "finish_reason": self.finish_reason or "stop",
        }
