"""POST /v1/chat/completions on any provider, streamed or not."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from apps.catalog.entries import CatalogEntry
from apps.gateway.metering import Meter, meter_open, meter_precheck
from apps.gateway.serving.common import (
    CallContext,
    ChunkStream,
    Priced,
    end_user_of,
    output_limit_check,
    resolve_model,
    stream_close,
    usage_body,
)
from apps.gateway.serving.content import check_tool_messages, content_check
from apps.gateway.serving.generation import close_meter_safely, settled_on_failure, stream_started
from apps.protocol import errors
from apps.protocol.openai import ChatCompletionRequest
from apps.providers.base import Chunk, Provider, Usage
from apps.providers.registry import serving_provider

ENDPOINT = "chat.completions"
SYSTEM_FINGERPRINT = "fp_plugsky_local"


async def create(
    request: ChatCompletionRequest, ctx: CallContext, *, endpoint: str = ENDPOINT
) -> Priced | ChunkStream:
    """`endpoint` names the API the call is recorded under: Responses and Messages calls are
    served here, translated, and recorded as theirs."""
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    _reject_unsupported(request)
    end_user = end_user_of(request.user)
    max_output = output_limit_check(request.output_limit, entry, param=_limit_param(request))
    check_tool_messages(request.messages)
    content_check(request.messages, entry)
    if _is_costly_to_prepare(request):
        # Grammars are compiled and images read only for an organization with credit for at
        # least the output part of the hold that follows.
        await meter_precheck(
            organization_id=ctx.organization_id,
            api_key_id=ctx.api_key_id,
            entry=entry,
            max_prompt_tokens=0,
            max_completion_tokens=max_output * request.n,
        )
    provider = await serving_provider(entry, affinity_key=_affinity_key(request))
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=endpoint,
        entry=entry,
        max_prompt_tokens=provider.prompt_token_bound(request),
        # Each choice is capped at max_output by the provider.
        max_completion_tokens=max_output * request.n,
        is_stream=bool(request.stream),
        end_user=end_user,
        is_tester=ctx.is_tester,
    )
    usage = Usage()
    view = _ChunkView(ctx, entry, request)
    work = _respond(provider, max_output, meter, usage, view)
    return await settled_on_failure(meter, usage, work)


async def _respond(
    provider: Provider, max_output: int, meter: Meter, usage: Usage, view: _ChunkView
) -> Priced | ChunkStream:
    request = view.request
    chunks = provider.chat(request, max_tokens=max_output, usage=usage)
    if request.stream:
        return await stream_started(
            chunks,
            meter,
            usage,
            convert=view.convert,
            usage_envelope=(lambda: view.envelope([])) if request.include_usage else None,
        )
    return await _collect(chunks, meter, usage, view)


def _affinity_key(request: ChatCompletionRequest) -> str:
    """The conversation's start: calls that share it go to the same replica of a self-hosted
    route, whose prompt cache then holds it."""
    start = [message.model_dump(include={"role", "content"}) for message in request.messages[:2]]
    return hashlib.sha256(json.dumps(start, sort_keys=True).encode()).hexdigest()


def _limit_param(request: ChatCompletionRequest) -> str:
    return "max_completion_tokens" if request.max_completion_tokens else "max_tokens"


def _is_costly_to_prepare(request: ChatCompletionRequest) -> bool:
    """Images to fetch and read, or grammars to compile: worth a credit check first."""
    has_images = any(
        isinstance(message.content, list) and any(part.type != "text" for part in message.content)
        for message in request.messages
    )
    format_type = request.response_format.type if request.response_format else "text"
    return has_images or bool(request.tools) or format_type != "text"


def _reject_unsupported(request: ChatCompletionRequest) -> None:
    if request.stream_options is not None and not request.stream:
        raise errors.invalid_value(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if request.top_logprobs is not None and not request.logprobs:
        raise errors.invalid_value(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
            "'top_logprobs' is used.",
            param="top_logprobs",
        )


@dataclass
class _ChunkView:
    """Turns provider chunks into the chunks and message OpenAI clients expect."""

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

    def convert(self, chunk: Chunk) -> list[dict[str, Any]]:
        """Zero or more client chunks for one provider chunk: the role first in each choice,
        then only deltas that carry something."""
        out: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            delta = {key: value for key, value in (choice.get("delta") or {}).items() if value}
            delta.pop("role", None)
            finish_reason = choice.get("finish_reason")
            logprobs = choice.get("logprobs") if self.request.logprobs else None
            if index not in self.started and (delta or finish_reason or logprobs):
                self.started.add(index)
                if "tool_calls" in delta:
                    # As OpenAI: an answer that opens with a call has content null from the start.
                    delta = {"role": "assistant", "content": None, **delta}
                else:
                    out.append(self._choice_chunk(index, {"role": "assistant", "content": ""}))
            if delta or finish_reason or logprobs:
                out.append(self._choice_chunk(index, delta, finish_reason, logprobs))
                if finish_reason and (sequence := _stop_sequence(choice)):
                    out[-1]["choices"][0]["stop_reason"] = sequence
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


async def _collect(
    chunks: AsyncIterator[Chunk], meter: Meter, usage: Usage, view: _ChunkView
) -> Priced:
    choices = {index: _Assembled() for index in range(view.request.n)}
    try:
        async for chunk in chunks:
            for choice in chunk.get("choices") or []:
                choices.setdefault(int(choice.get("index", 0)), _Assembled()).add(choice)
    finally:
        await stream_close(chunks)  # a client gone: the work upstream stops now
    cost = await close_meter_safely(meter, usage, status=200)
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
        "usage": usage_body(usage, cost),
    }
    return Priced(body, cost)


def _stop_sequence(choice: dict[str, Any]) -> str | None:
    """The stop sequence that ended a choice, as vLLM reports it (`stop_reason`; a token id
    there is not a sequence) and the local engine and Anthropic's provider copy it."""
    reason = choice.get("stop_reason")
    return reason if isinstance(reason, str) and reason else None


@dataclass
class _Assembled:
    """One choice of a non-streamed completion, assembled from its chunks."""

    content: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | None = None  # the stop sequence that ended the text, if one did

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self.content.append(delta["content"])
        for call in delta.get("tool_calls") or []:
            self._add_call(call)
        self.logprobs.extend((choice.get("logprobs") or {}).get("content") or [])
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        self.stop_reason = _stop_sequence(choice) or self.stop_reason

    def _add_call(self, call: dict[str, Any]) -> None:
        if call["index"] == len(self.tool_calls):
            function = call["function"]
            self.tool_calls.append(
                {"id": call["id"], "type": "function", "function": dict(function)}
            )
        else:
            self.tool_calls[call["index"]]["function"]["arguments"] += call["function"]["arguments"]

    def _complete_calls(self) -> list[dict[str, Any]]:
        """The calls, less one that max_tokens cut off (its arguments are not valid JSON)."""
        if self.finish_reason != "length" or not self.tool_calls:
            return self.tool_calls
        try:
            json.loads(self.tool_calls[-1]["function"]["arguments"])
        except (ValueError, RecursionError):  # cut off, or nested past the parser's stack
            return self.tool_calls[:-1]
        return self.tool_calls

    def as_choice(self, index: int, *, with_logprobs: bool) -> dict[str, Any]:
        self.tool_calls = self._complete_calls()
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.content) if self.content or not self.tool_calls else None,
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        choice = {
            "index": index,
            "message": message,
            "logprobs": {"content": self.logprobs, "refusal": None} if with_logprobs else None,
            "finish_reason": self.finish_reason or "stop",
        }
        return choice | ({"stop_reason": self.stop_reason} if self.stop_reason else {})
