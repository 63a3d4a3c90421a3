"""POST /v1/chat/completions on any provider, streamed or not."""

from __future__ import annotations

import json
import logging
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
    merge_streams,
    output_limit_check,
    resolve_model,
    usage_body,
)
from apps.gateway.serving.content import message_texts
from apps.gateway.serving.generation import (
    Tally,
    close_meter_safely,
    settled_on_failure,
    stream_started,
)
from apps.gateway.serving.logprobs import chat_logprobs
from apps.gateway.serving.structured import JsonAnswer, json_answer, lark
from apps.gateway.serving.tools import (
    ToolPlan,
    check_tool_messages,
    render_conversation,
    tool_plan,
    tool_stream,
)
from apps.protocol import errors
from apps.protocol.openai import ChatCompletionRequest
from apps.providers.registry import provider_for

logger = logging.getLogger(__name__)

ENDPOINT = "chat.completions"
SYSTEM_FINGERPRINT = "fp_plugsky_local"
# Chat templates add a few tokens per message; UTF-8 bytes bound the text's tokens from above.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
# Some templates add a default system prompt (Qwen's is ~20 tokens) when the request has none.
_TEMPLATE_TOKENS_PER_REQUEST = 64


async def create(request: ChatCompletionRequest, ctx: CallContext) -> Priced | ChunkStream:
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    _reject_unsupported(request)
    end_user = end_user_of(request.user)
    max_output = output_limit_check(request.output_limit, entry, param=_limit_param(request))
    check_tool_messages(request.messages)
    if _is_costly_to_prepare(request):
        # Images are fetched and read, grammars compiled, only for an organization with credit
        # for at least the output part of the hold that follows.
        await meter_precheck(
            organization_id=ctx.organization_id,
            api_key_id=ctx.api_key_id,
            entry=entry,
            max_prompt_tokens=0,
            max_completion_tokens=max_output * request.n,
        )
    plan = tool_plan(request)
    answer = json_answer(request.response_format)
    texts = await message_texts(request.messages, entry)
    messages = render_conversation(request.messages, texts, plan)
    grammar = _grammar(plan, answer)
    bodies = [
        _engine_body(request, messages, choice, grammar=grammar, max_output=max_output)
        for choice in range(request.n)
    ]
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=ENDPOINT,
        entry=entry,
        max_prompt_tokens=min(_prompt_token_bound(messages), entry.context_length),
        # Each choice is capped at max_output by the engine, a tool-call retry included.
        max_completion_tokens=max_output * request.n,
        is_stream=bool(request.stream),
        end_user=end_user,
        is_tester=ctx.is_tester,
    )
    tally = Tally(samples_per_prompt=request.n)
    view = _ChunkView(ctx=ctx, entry=entry, request=request)
    work = _respond(bodies, plan, answer, meter, tally, view)
    return await settled_on_failure(meter, tally, work)


async def _respond(
    bodies: list[dict[str, Any]],
    plan: ToolPlan | None,
    answer: JsonAnswer | None,
    meter: Meter,
    tally: Tally,
    view: _ChunkView,
) -> Priced | ChunkStream:
    entry, request = view.entry, view.request
    provider = provider_for(entry)

    def start(body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        # Seeded requests run on an isolated engine, so the same seed gives the same text.
        return provider.chat_stream(entry, body, isolated=request.seed is not None)

    calling = plan if plan is not None and plan.mode != "none" else None
    streams = [
        tool_stream(start, body, calling, answer) if calling else start(body) for body in bodies
    ]
    if request.stream:
        return await stream_started(
            streams,
            meter,
            tally,
            convert=view.convert,
            usage_envelope=(lambda: view.envelope([])) if request.include_usage else None,
        )
    return await _collect(streams, meter, tally, view)


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


def _grammar(plan: ToolPlan | None, answer: JsonAnswer | None) -> str | None:
    if plan is not None:
        return plan.grammar(answer)
    if answer is not None:
        return lark("start: answer", answer.rule("answer"))
    return None


def _prompt_token_bound(messages: list[dict[str, Any]]) -> int:
    """An upper bound on prompt tokens without tokenizing: every token covers >= 1 UTF-8 byte."""
    size = sum(_TEMPLATE_TOKENS_PER_MESSAGE + len(m["content"].encode()) for m in messages)
    return _TEMPLATE_TOKENS_PER_REQUEST + size


def _engine_body(
    request: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    choice: int,
    *,
    grammar: str | None,
    max_output: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": messages,
        # Always explicit, so the engine can never generate more than the hold covers.
        "max_tokens": max_output,
        "stream": True,
        "stream_options": {"include_usage": True},
        "timings_per_token": True,  # exact token counts with every chunk
        # OpenAI samples with temperature and top_p only: switch llama.cpp's extra samplers off.
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "top_k": 0,
        "min_p": 0.0,
    }
    if request.stop is not None:
        body["stop"] = request.stop_list
    if request.seed is not None:
        body["seed"] = request.seed + choice  # n choices: independent, yet reproducible
    if request.presence_penalty or request.frequency_penalty:
        body["presence_penalty"] = request.presence_penalty or 0.0
        body["frequency_penalty"] = request.frequency_penalty or 0.0
        # Over the whole output, as OpenAI applies them (llama.cpp's default window is 64).
        body["repeat_last_n"] = max_output
    if grammar is not None:
        body["grammar"] = grammar
    if request.logprobs:
        body["logprobs"] = True
        # llama.cpp reports nothing at all when asked for 0 alternatives; extras are cut later.
        body["top_logprobs"] = max(request.top_logprobs or 0, 1)
    if request.logit_bias:
        body["logit_bias"] = [[int(token), bias] for token, bias in request.logit_bias.items()]
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
            logprobs = (
                chat_logprobs(choice.get("logprobs"), top=self.request.top_logprobs or 0)
                if self.request.logprobs
                else None
            )
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


async def _collect(
    streams: list[AsyncIterator[dict[str, Any]]], meter: Meter, tally: Tally, view: _ChunkView
) -> Priced:
    choices = {
        index: _Assembled(top=view.request.top_logprobs or 0) for index in range(len(streams))
    }
    async for index, chunk in merge_streams(streams):
        tally.observe(index, chunk)
        for choice in chunk.get("choices") or []:
            choices[index].add(choice)
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
    return Priced(body, cost)


@dataclass
class _Assembled:
    """One choice of a non-streamed completion, assembled from its chunks."""

    content: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    top: int = 0  # alternatives per token the request asked for

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self.content.append(delta["content"])
        for call in delta.get("tool_calls") or []:
            self._add_call(call)
        self.logprobs.extend(
            (chat_logprobs(choice.get("logprobs"), top=self.top) or {}).get("content") or []
        )
        self.finish_reason = choice.get("finish_reason") or self.finish_reason

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
        return {
            "index": index,
            "message": message,
            "logprobs": {"content": self.logprobs, "refusal": None} if with_logprobs else None,
            "finish_reason": self.finish_reason or "stop",
        }
