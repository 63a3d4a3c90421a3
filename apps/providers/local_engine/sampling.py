"""What chat and completions engine bodies share: OpenAI's sampling parameters in llama.cpp's
terms, always streamed with exact token counts."""

from __future__ import annotations

from typing import Any

from apps.protocol.openai import ChatCompletionRequest, CompletionRequest


def sampling_fields(
    request: ChatCompletionRequest | CompletionRequest, *, sample: int, max_tokens: int
) -> dict[str, Any]:
    """The body fields of sample `sample` (0 … n-1) of the request."""
    body: dict[str, Any] = {
        # Always explicit, so the engine can never generate more than the hold covers.
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "timings_per_token": True,  # exact token counts with every chunk
        # OpenAI samples with temperature and top_p only: switch llama.cpp's extra samplers off,
        # but top_k when a client asks for it (Anthropic's Messages API has it; 0 is off).
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "top_k": request.top_k or 0,
        "min_p": 0.0,
    }
    if request.stop is not None:
        body["stop"] = request.stop_list
    if request.seed is not None:
        body["seed"] = request.seed + sample  # n samples: independent, yet reproducible
    if request.presence_penalty or request.frequency_penalty:
        body["presence_penalty"] = request.presence_penalty or 0.0
        body["frequency_penalty"] = request.frequency_penalty or 0.0
        # Over the whole output, as OpenAI applies them (llama.cpp's default window is 64;
        # -1 is refused).
        body["repeat_last_n"] = max_tokens
    if request.logit_bias:
        body["logit_bias"] = [[int(token), bias] for token, bias in request.logit_bias.items()]
    return body
