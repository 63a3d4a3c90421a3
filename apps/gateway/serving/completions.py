"""POST /v1/completions (legacy): prompts as text or tokens, echo, streaming."""

from __future__ import annotations

import logging
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
    merge_streams,
    output_limit_check,
    resolve_model,
    usage_body,
)
from apps.gateway.serving.generation import (
    Tally,
    close_meter_safely,
    settled_on_failure,
    stream_started,
)
from apps.gateway.serving.logprobs import LegacyLogprobs
from apps.protocol import errors
from apps.protocol.openai import MAX_EMBEDDING_INPUTS, CompletionRequest
from apps.providers.registry import provider_for

logger = logging.getLogger(__name__)

ENDPOINT = "completions"
EnginePrompt = str | list[int]
# Prompts times n per call, as OpenAI caps the inputs of an embeddings call (MAX_EMBEDDING_INPUTS):
# every choice is an engine job and its share of the hold.
MAX_CHOICES = MAX_EMBEDDING_INPUTS


async def create(request: CompletionRequest, ctx: CallContext) -> Priced | ChunkStream:
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    prompts = _prompts(request)
    _reject_unsupported(request, prompts)
    end_user = end_user_of(request.user)
    max_output = output_limit_check(request.max_tokens or 16, entry, param="max_tokens")
    # Choice i*n + j is sample j of prompt i, as OpenAI numbers them.
    bodies = [
        _engine_body(request, prompt, sample, max_output=max_output)
        for prompt in prompts
        for sample in range(request.n)
    ]
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=ENDPOINT,
        entry=entry,
        # Each prompt fits the context window on its own (a longer one fails, unbilled); the
        # call processes all of them, each counted once however many samples it has.
        max_prompt_tokens=sum(min(_token_bound(p), entry.context_length) for p in prompts),
        max_completion_tokens=max_output * len(bodies),
        is_stream=bool(request.stream),
        end_user=end_user,
        is_tester=ctx.is_tester,
    )
    tally = Tally(samples_per_prompt=request.n)
    view = _TextView(ctx=ctx, entry=entry, request=request, prompts=prompts)
    return await settled_on_failure(meter, tally, _respond(bodies, meter, tally, view))


async def _respond(
    bodies: list[dict[str, Any]], meter: Meter, tally: Tally, view: _TextView
) -> Priced | ChunkStream:
    entry, request = view.entry, view.request
    provider = provider_for(entry)
    # Seeded requests run on an isolated engine, so the same seed gives the same text.
    streams = [
        provider.complete_stream(entry, body, isolated=request.seed is not None) for body in bodies
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


def _prompts(request: CompletionRequest) -> list[EnginePrompt]:
    prompt = request.prompt
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise errors.invalid_value("'prompt' must not be empty.", param="prompt")
    if all(isinstance(item, int) for item in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    prompts: list[EnginePrompt] = [item for item in prompt if isinstance(item, str | list)]
    if any(isinstance(item, list) and not item for item in prompts):
        raise errors.invalid_value("Token prompts must not be empty.", param="prompt")
    return prompts


def _reject_unsupported(request: CompletionRequest, prompts: list[EnginePrompt]) -> None:
    if request.stream_options is not None and not request.stream:
        raise errors.invalid_value(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if request.max_tokens == 0:
        raise errors.invalid_value("'max_tokens' must be at least 1.", param="max_tokens")
    if len(prompts) * request.n > MAX_CHOICES:
        raise errors.invalid_value(
            f"This request asks for {len(prompts) * request.n} choices ({len(prompts)} prompts, "
            f"n={request.n}); at most {MAX_CHOICES} prompts times n are allowed per request.",
            param="prompt",
        )
    if request.echo and any(isinstance(prompt, list) for prompt in prompts):
        raise errors.invalid_value(
            "'echo' is supported with text prompts only, not token arrays.", param="echo"
        )
    if request.suffix:
        raise errors.invalid_value("'suffix' is not supported by this model.", param="suffix")
    if request.best_of is not None and request.best_of != request.n:
        raise errors.invalid_value("'best_of' must equal 'n' on this model.", param="best_of")
    if request.logprobs is not None and request.echo:
        raise errors.invalid_value(
            "'logprobs' together with 'echo' is not supported on this model: it cannot score "
            "the prompt's tokens.",
            param="logprobs",
        )


def _token_bound(prompt: EnginePrompt) -> int:
    return len(prompt) + 2 if isinstance(prompt, list) else len(prompt.encode()) + 2


def _engine_body(
    request: CompletionRequest, prompt: EnginePrompt, sample: int, *, max_output: int
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": max_output,
        "stream": True,
        "stream_options": {"include_usage": True},
        "timings_per_token": True,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "top_k": 0,
        "min_p": 0.0,
    }
    if request.stop is not None:
        body["stop"] = request.stop_list
    if request.seed is not None:
        body["seed"] = request.seed + sample
    if request.presence_penalty or request.frequency_penalty:
        body["presence_penalty"] = request.presence_penalty or 0.0
        body["frequency_penalty"] = request.frequency_penalty or 0.0
        # Over the whole output (llama.cpp's default window is 64 tokens; -1 is refused).
        body["repeat_last_n"] = max_output
    if request.logit_bias:
        body["logit_bias"] = [[int(token), bias] for token, bias in request.logit_bias.items()]
    if request.logprobs is not None:
        body["logprobs"] = True
        # llama.cpp reports nothing at all when asked for 0 alternatives; extras are cut later.
        body["top_logprobs"] = max(request.logprobs, 1)
    return body


@dataclass
class _TextView:
    ctx: CallContext
    entry: CatalogEntry
    request: CompletionRequest
    prompts: list[EnginePrompt]
    echoed: set[int] = field(default_factory=set)
    scores: dict[int, LegacyLogprobs] = field(default_factory=dict)

    def convert(self, index: int, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The client chunks of one engine chunk of choice `index` (streaming)."""
        out = []
        scores = self.scores.setdefault(index, LegacyLogprobs(top=self.request.logprobs or 0))
        for choice in chunk.get("choices") or []:
            text = _text_of(choice)
            if index not in self.echoed:
                self.echoed.add(index)
                text = self.echo_for(index) + text
            finish_reason = choice.get("finish_reason")
            logprobs = self.logprobs_of(scores, choice)
            if text or finish_reason or logprobs:
                out.append(self.envelope([_choice(index, text, finish_reason, logprobs)]))
        return out

    @property
    def completion_id(self) -> str:
        return "cmpl-" + self.ctx.request_id.removeprefix("req_")

    def echo_for(self, index: int) -> str:
        prompt = self.prompts[index // self.request.n]
        return prompt if self.request.echo and isinstance(prompt, str) else ""

    def logprobs_of(self, scores: LegacyLogprobs, choice: dict[str, Any]) -> dict[str, Any] | None:
        """Record a chunk's token logprobs; their legacy shape, when the request asked."""
        if self.request.logprobs is None:
            return None
        return scores.add(choice.get("logprobs"))

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.completion_id,
            "object": "text_completion",
            "created": self.ctx.created,
            "model": self.entry.id,
            "system_fingerprint": "fp_plugsky_local",
            "choices": choices,
        }
        # Unlike chat chunks, the legacy schema has no nullable usage: content chunks omit it.
        return body


def _choice(
    index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def _text_of(choice: dict[str, Any]) -> str:
    if "text" in choice:
        return str(choice.get("text") or "")
    return str((choice.get("delta") or {}).get("content") or "")


async def _collect(
    streams: list[AsyncIterator[dict[str, Any]]], meter: Meter, tally: Tally, view: _TextView
) -> Priced:
    texts: dict[int, list[str]] = {index: [view.echo_for(index)] for index in range(len(streams))}
    finish: dict[int, str] = {}
    scores = [LegacyLogprobs(top=view.request.logprobs or 0) for _ in streams]
    async for index, chunk in merge_streams(streams):
        tally.observe(index, chunk)
        for choice in chunk.get("choices") or []:
            texts[index].append(_text_of(choice))
            view.logprobs_of(scores[index], choice)
            finish[index] = choice.get("finish_reason") or finish.get(index, "")
    cost = await close_meter_safely(meter, tally, status=200)
    with_logprobs = view.request.logprobs is not None
    choices = [
        _choice(
            index,
            "".join(texts[index]),
            finish.get(index) or "stop",
            scores[index].as_dict() if with_logprobs else None,
        )
        for index in sorted(texts)
    ]
    body = view.envelope(choices)
    body["usage"] = usage_body(tally.prompt_tokens, tally.completion_tokens, cost)
    return Priced(body, cost)
