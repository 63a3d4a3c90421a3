"""Legacy completions on the local engine: prompts as text or tokens, echo, legacy logprobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from apps.protocol import errors
from apps.protocol.openai import CompletionRequest
from apps.providers.base import Chunk, Usage
from apps.providers.local_engine.logprobs import LegacyLogprobs
from apps.providers.local_engine.sampling import sampling_fields
from apps.providers.local_engine.tally import Tally, merge_streams

EnginePrompt = str | list[int]
StartStream = Callable[[dict[str, Any]], AsyncIterator[Chunk]]


def unsupported_check(request: CompletionRequest) -> None:
    """What llama.cpp's completions cannot do, as 400s naming the parameter."""
    if request.echo and any(isinstance(prompt, list) for prompt in request.prompts):
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


def prompt_token_bound(prompt: EnginePrompt) -> int:
    """Ids, or UTF-8 bytes, plus BOS/EOS."""
    return len(prompt) + 2 if isinstance(prompt, list) else len(prompt.encode()) + 2


async def completion_chunks(
    request: CompletionRequest, *, start: StartStream, max_tokens: int, usage: Usage
) -> AsyncIterator[Chunk]:
    """OpenAI text_completion chunks; choice i*n + j is sample j of prompt i, as OpenAI
    numbers them. An echoed prompt comes first in its choice's first chunk."""
    prompts = request.prompts
    streams = [
        start(_engine_body(request, prompt, sample, max_tokens=max_tokens))
        for prompt in prompts
        for sample in range(request.n)
    ]
    tally = Tally(usage, samples_per_prompt=request.n)
    echoes = {
        index: prompts[index // request.n] if request.echo else "" for index in range(len(streams))
    }
    scores = {
        index: LegacyLogprobs(offset=len(echoes[index]), top=request.logprobs or 0)
        for index in range(len(streams))
    }
    async for index, chunk in merge_streams(streams):
        tally.observe(index, chunk)
        for choice in chunk.get("choices") or []:
            text = str(echoes.pop(index, "")) + _text_of(choice)
            logprobs = scores[index].add(choice.get("logprobs"))
            yield {
                "choices": [
                    {
                        "index": index,
                        "text": text,
                        "logprobs": logprobs if request.logprobs is not None else None,
                        "finish_reason": choice.get("finish_reason"),
                    }
                ]
            }


def _text_of(choice: dict[str, Any]) -> str:
    if "text" in choice:
        return str(choice.get("text") or "")
    return str((choice.get("delta") or {}).get("content") or "")


def _engine_body(
    request: CompletionRequest, prompt: EnginePrompt, sample: int, *, max_tokens: int
) -> dict[str, Any]:
    body = {"prompt": prompt, **sampling_fields(request, sample=sample, max_tokens=max_tokens)}
    if request.logprobs is not None:
        body["logprobs"] = True
        # llama.cpp reports nothing at all when asked for 0 alternatives; extras are cut later.
        body["top_logprobs"] = max(request.logprobs, 1)
    return body
