"""POST /v1/audio/transcriptions and /translations on the engine's Whisper models.

The upload is decoded here first (apps.providers.audio.decode): its exact duration is what
the call holds and is charged (apps.gateway.serving.audio), and audio that cannot be decoded is
refused before anything is held. Whisper's segments stream from the engine as they are
decoded; `stream=true` passes them on as OpenAI's `transcript.text.delta` events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.billing.pricing import billed_audio_seconds
from apps.catalog.entries import Kind
from apps.gateway.metering import Meter, meter_precheck
from apps.gateway.serving.audio import audio_meter_open, audio_model_resolve
from apps.gateway.serving.common import CallContext, api_error_from, stream_close
from apps.gateway.serving.generation import close_meter_safely, settle_failure, settled_on_failure
from apps.protocol import errors
from apps.protocol.audio import TranscriptionRequest
from apps.providers.audio.decode import AudioDecodeError, decode_audio
from apps.providers.audio.wire import TRANSCRIBE_SAMPLE_RATE
from apps.providers.base import Usage
from apps.providers.errors import ProviderError
from apps.providers.registry import local_engine

Chunk = dict[str, Any]
_STREAMED_FORMATS = frozenset({"json", "text"})


@dataclass(frozen=True)
class Transcript:
    """Whisper's whole result for a call and what it was charged (micro-dollars)."""

    result: dict[str, Any]
    seconds: int
    cost_micros: int


@dataclass(frozen=True)
class TranscriptEvents:
    """OpenAI's transcript stream events; closing them early settles the call."""

    events: AsyncGenerator[Chunk, None]


async def transcribe(
    request: TranscriptionRequest, audio: bytes, ctx: CallContext, *, translate: bool
) -> Transcript | TranscriptEvents:
    endpoint = "audio.translations" if translate else "audio.transcriptions"
    entry = audio_model_resolve(
        request.model,
        endpoint=endpoint,
        kind=Kind.TRANSCRIPTION,
        capability="translation" if translate else "transcription",
    )
    if request.stream and request.response_format not in _STREAMED_FORMATS:
        raise errors.invalid_value(
            f"response_format '{request.response_format}' cannot be streamed; with "
            "stream=true use 'json' or 'text'.",
            param="response_format",
        )
    # Decoding costs the web process real work: only for an organization with credit for at
    # least one billed second (as chat checks before compiling grammars or reading images).
    await meter_precheck(
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        entry=entry,
        max_prompt_tokens=1,
        max_completion_tokens=0,
    )
    samples = await _decoded(audio)  # before the hold: undecodable audio holds nothing
    seconds = billed_audio_seconds(sample_count=samples.size, sample_rate=TRANSCRIBE_SAMPLE_RATE)
    meter = await audio_meter_open(
        ctx=ctx, entry=entry, endpoint=endpoint, units=seconds, is_stream=request.stream
    )
    chunks = local_engine().transcribe_stream(
        entry, samples.tobytes(), options=_options(request, translate=translate)
    )
    # The engine's first chunk (language, duration) exists once the model is loaded and has
    # started: a failure before it still gets its own status, and leaves no hold.
    info = await settled_on_failure(meter, Usage(), _info(chunks))
    usage = Usage(prompt_tokens=seconds)
    if request.stream:
        return TranscriptEvents(_events(chunks, meter, usage))
    work = _collected(chunks, info, meter, usage, task=_task(translate))
    return await settled_on_failure(meter, Usage(), work)  # a failed call used nothing


async def _decoded(audio: bytes) -> np.ndarray:
    try:
        return await asyncio.to_thread(decode_audio, audio)
    except AudioDecodeError:
        raise errors.invalid_value(
            "Audio file might be corrupted or unsupported.", param="file", code="invalid_value"
        ) from None


def _task(translate: bool) -> str:
    return "translate" if translate else "transcribe"


def _options(request: TranscriptionRequest, *, translate: bool) -> dict[str, str]:
    options = {
        "task": _task(translate),
        "temperature": str(request.temperature),
        "words": "true" if "word" in request.timestamp_granularities else "false",
    }
    if request.language and not translate:  # a translation's source language is detected
        options["language"] = request.language
    if request.prompt:
        options["prompt"] = request.prompt
    return options


async def _info(chunks: AsyncIterator[Chunk]) -> dict[str, Any]:
    first = await anext(chunks, None)
    if first is None or "info" not in first:
        raise ProviderError("The engine's transcription began without its info.", status=502)
    info: dict[str, Any] = first["info"]
    return info


async def _collected(
    chunks: AsyncIterator[Chunk], info: dict[str, Any], meter: Meter, usage: Usage, *, task: str
) -> Transcript:
    segments = [chunk["segment"] async for chunk in chunks]
    cost = await close_meter_safely(meter, usage, status=200)
    result = {
        **info,
        "task": task,
        "text": "".join(segment["text"] for segment in segments).strip(),
        "segments": [{k: v for k, v in s.items() if k != "words"} for s in segments],
        "words": [word for segment in segments for word in segment["words"]],
    }
    return Transcript(result, usage.prompt_tokens, cost)


async def _events(
    chunks: AsyncIterator[Chunk], meter: Meter, usage: Usage
) -> AsyncGenerator[Chunk, None]:
    """A delta per segment, then the whole text with the usage; settles the call once. A
    failure after the first event is sent as one error event, unbilled."""
    text = ""
    try:
        async for chunk in chunks:
            delta = chunk["segment"]["text"]
            delta = delta.lstrip() if not text else delta
            text += delta
            yield {"type": "transcript.text.delta", "delta": delta}
        await close_meter_safely(meter, usage, status=200)
        # No `usage`: the reference gives the done event token usage only, and audio billed
        # by duration has none (the JSON answer carries `{"type": "duration", "seconds"}`).
        yield {"type": "transcript.text.done", "text": text.rstrip()}
    except ProviderError as failure:
        await settle_failure(meter, usage, failure)
        yield api_error_from(failure).body()
    except BaseException as failure:  # the client went away, or a bug
        await settle_failure(meter, usage, failure)
        raise
    finally:
        await stream_close(chunks)
