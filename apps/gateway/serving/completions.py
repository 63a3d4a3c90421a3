"""POST /v1/completions (legacy): prompts as text or tokens, echo, streaming."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from apps.catalog.entries import CatalogEntry
from apps.gateway.metering import Meter, meter_open
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
from apps.gateway.serving.generation import close_meter_safely, settled_on_failure, stream_started
from apps.protocol import errors
from apps.protocol.openai import MAX_EMBEDDING_INPUTS, CompletionRequest
from apps.providers.base import Chunk, Provider, Usage
from apps.providers.registry import serving_provider

ENDPOINT = "completions"
# Prompts times n per call, as OpenAI caps the inputs of an embeddings call (MAX_EMBEDDING_INPUTS):
# every choice is a generation and its share of the hold.
MAX_CHOICES = MAX_EMBEDDING_INPUTS
_LOGPROB_FIELDS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


async def create(request: CompletionRequest, ctx: CallContext) -> Priced | ChunkStream:
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    choices = _choices_check(request)
    end_user = end_user_of(request.user)
    max_output = output_limit_check(request.max_tokens or 16, entry, param="max_tokens")
    provider = await serving_provider(entry, affinity_key=_affinity_key(request))
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=ENDPOINT,
        entry=entry,
        max_prompt_tokens=provider.prompt_token_bound(request),
        max_completion_tokens=max_output * choices,
        is_stream=bool(request.stream),
        end_user=end_user,
        is_tester=ctx.is_tester,
    )
    usage = Usage()
    view = _TextView(ctx=ctx, entry=entry, request=request)
    work = _respond(provider, max_output, meter, usage, view)
    return await settled_on_failure(meter, usage, work)


async def _respond(
    provider: Provider, max_output: int, meter: Meter, usage: Usage, view: _TextView
) -> Priced | ChunkStream:
    request = view.request
    chunks = provider.complete(request, max_tokens=max_output, usage=usage)
    if request.stream:
        return await stream_started(
            chunks,
            meter,
            usage,
            convert=view.convert,
            usage_envelope=(lambda: view.envelope([])) if request.include_usage else None,
        )
    return await _collect(chunks, meter, usage, view)


def _affinity_key(request: CompletionRequest) -> str:
    """The first prompt's start: see chat's."""
    start = request.prompts[0][:256]
    return hashlib.sha256(json.dumps(start).encode()).hexdigest()


def _choices_check(request: CompletionRequest) -> int:
    """The number of choices the call makes (prompts times n), once the request is sound."""
    if request.stream_options is not None and not request.stream:
        raise errors.invalid_value(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if request.max_tokens == 0:
        raise errors.invalid_value("'max_tokens' must be at least 1.", param="max_tokens")
    prompts = len(request.prompts)
    if prompts * request.n > MAX_CHOICES:
        raise errors.invalid_value(
            f"This request asks for {prompts * request.n} choices ({prompts} prompts, "
            f"n={request.n}); at most {MAX_CHOICES} prompts times n are allowed per request.",
            param="prompt",
        )
    return prompts * request.n


@dataclass
class _TextView:
    ctx: CallContext
    entry: CatalogEntry
    request: CompletionRequest

    @property
    def completion_id(self) -> str:
        return "cmpl-" + self.ctx.request_id.removeprefix("req_")

    def convert(self, chunk: Chunk) -> list[dict[str, Any]]:
        """The client chunks of one provider chunk (streaming): those that carry something."""
        return [
            self.envelope([_choice(choice)])
            for choice in chunk.get("choices") or []
            if choice.get("text") or choice.get("finish_reason") or choice.get("logprobs")
        ]

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        # Unlike chat chunks, the legacy schema has no nullable usage: content chunks omit it.
        return {
            "id": self.completion_id,
            "object": "text_completion",
            "created": self.ctx.created,
            "model": self.entry.id,
            "system_fingerprint": "fp_plugsky_local",
            "choices": choices,
        }


def _choice(choice: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": choice.get("text") or "",
        "index": int(choice.get("index", 0)),
        "logprobs": choice.get("logprobs"),
        "finish_reason": choice.get("finish_reason"),
    }


@dataclass
class _Assembled:
    """One choice of a non-streamed completion, assembled from its chunks."""

    text: list[str] = field(default_factory=list)
    logprobs: dict[str, list[Any]] = field(default_factory=lambda: {f: [] for f in _LOGPROB_FIELDS})
    finish_reason: str = ""

    def add(self, choice: dict[str, Any]) -> None:
        self.text.append(choice.get("text") or "")
        for name in _LOGPROB_FIELDS:
            self.logprobs[name].extend((choice.get("logprobs") or {}).get(name) or [])
        self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def as_choice(self, index: int, *, with_logprobs: bool) -> dict[str, Any]:
        logprobs = self.logprobs if with_logprobs else None
        return {
            "text": "".join(self.text),
            "index": index,
            "logprobs": logprobs,
            "finish_reason": self.finish_reason or "stop",
        }


async def _collect(
    chunks: AsyncIterator[Chunk], meter: Meter, usage: Usage, view: _TextView
) -> Priced:
    request = view.request
    choices = {index: _Assembled() for index in range(len(request.prompts) * request.n)}
    try:
        async for chunk in chunks:
            for choice in chunk.get("choices") or []:
                choices.setdefault(int(choice.get("index", 0)), _Assembled()).add(choice)
    finally:
        await stream_close(chunks)  # a client gone: the work upstream stops now
    cost = await close_meter_safely(meter, usage, status=200)
    with_logprobs = request.logprobs is not None
    body = view.envelope(
        [choices[index].as_choice(index, with_logprobs=with_logprobs) for index in sorted(choices)]
    )
    body["usage"] = usage_body(usage, cost)
    return Priced(body, cost)
