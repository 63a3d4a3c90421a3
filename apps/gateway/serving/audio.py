"""POST /v1/audio/speech on the engine's voice, and what the audio endpoints share.

Billing counts audio units as the meter's prompt tokens (apps.billing.pricing prices them per
kind): a transcription holds and is charged its duration in whole seconds (rounded up), known
exactly once the upload is decoded, before anything is held; speech holds and is charged its
input's characters. Both holds are therefore exact, and settle to the same amount. An audio
call whose work had begun when its client left is billed its whole input.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from apps.billing.pricing import MICROS_PER_DOLLAR, audio_cost_micros
from apps.catalog.entries import CatalogEntry, Kind
from apps.catalog.selectors import catalog_model
from apps.gateway.metering import Meter, meter_open
from apps.gateway.serving.audio_routes import AudioRoute, audio_routes, first_served
from apps.gateway.serving.common import CallContext
from apps.gateway.serving.generation import close_meter_safely, settle_failure, settled_on_failure
from apps.protocol import errors
from apps.protocol.audio import SpeechRequest
from apps.providers.audio.encode import CONTENT_TYPES, speech_encoder
from apps.providers.base import Usage
from apps.providers.errors import ProviderError
from apps.providers.registry import local_engine

logger = logging.getLogger(__name__)

_PATHS = {
    "audio.transcriptions": "v1/audio/transcriptions",
    "audio.translations": "v1/audio/translations",
    "audio.speech": "v1/audio/speech",
}


@dataclass(frozen=True)
class Speech:
    """Encoded audio as it is synthesized; its price is known before it starts."""

    chunks: AsyncIterator[bytes]
    content_type: str
    cost_micros: int


def audio_model_resolve(
    model_id: str, *, endpoint: str, kind: Kind, capability: str
) -> CatalogEntry:
    """The entry for `model_id`, or OpenAI's 404, or its 400 for a model of another kind."""
    entry = catalog_model(model_id)
    if entry is None:
        raise errors.model_not_found(model_id)
    if entry.kind != kind:
        message = f"The model `{entry.id}` is a {entry.kind.value} model and is not supported"
    elif capability not in entry.capabilities:  # an English-only Whisper cannot translate
        message = f"The model `{entry.id}` does not support {capability} and is not supported"
    else:
        return entry
    raise errors.invalid_value(
        f"{message} on {_PATHS[endpoint]}.", param="model", code="model_not_supported"
    )


async def audio_meter_open(
    *, ctx: CallContext, entry: CatalogEntry, endpoint: str, units: int, is_stream: bool
) -> Meter:
    """Hold exactly `units` (seconds or characters: they are known before the work starts)."""
    return await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=endpoint,
        entry=entry,
        max_prompt_tokens=units,
        max_completion_tokens=0,
        is_stream=is_stream,
        is_tester=ctx.is_tester,
    )


# -- text to speech -------------------------------------------------------------------------


async def speak(request: SpeechRequest, ctx: CallContext) -> Speech:
    entry = audio_model_resolve(
        request.model, endpoint="audio.speech", kind=Kind.SPEECH, capability="speech"
    )
    if request.voice not in entry.voices:
        raise errors.invalid_value(
            f"Invalid 'voice': `{request.voice}` is not a voice of `{entry.id}`. "
            f"Supported voices: {', '.join(entry.voices)}.",
            param="voice",
            code="invalid_value",
        )
    if request.stream_format == "sse":
        raise errors.invalid_value(
            "stream_format 'sse' is not supported; use 'audio'.", param="stream_format"
        )
    routes = await audio_routes(entry)
    characters = len(request.input)
    # The hold covers the dearest route; the call is charged at the one that answers.
    meter = await audio_meter_open(
        ctx=ctx, entry=entry, endpoint="audio.speech", units=characters, is_stream=True
    )

    async def attempt(route: AudioRoute) -> AsyncGenerator[bytes, None]:
        # The first audio exists before the response starts, so a failure to load or
        # synthesize still gets its own status (and leaves no hold), or falls back.
        if route.upstream is None:
            pcm = local_engine().speak_stream(
                entry, request.input, voice=request.voice, speed=request.speed
            )
            return _encoded(pcm, await _first(pcm), request.response_format)
        passed = route.upstream.speech(_upstream_speech_body(request))
        return _chained(await _first(passed), passed)

    audio, route = await settled_on_failure(meter, Usage(), first_served(routes, attempt))
    usage = Usage(
        prompt_tokens=characters,
        provider=route.provider,
        route_index=route.index,
        upstream_model=route.upstream_model,
    )
    return Speech(
        _settled(audio, meter, usage),
        CONTENT_TYPES[request.response_format],
        audio_cost_micros(entry=entry, units=characters, route_index=route.index),
    )


def _upstream_speech_body(request: SpeechRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": request.input,
        "voice": request.voice,
        "response_format": request.response_format,
        "speed": request.speed,
    }
    if request.instructions is not None:
        body["instructions"] = request.instructions
    return body


async def _first(chunks: AsyncIterator[bytes]) -> bytes:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        raise ProviderError("The input produced no speech.", status=400, param="input") from None


async def _encoded(
    pcm: AsyncGenerator[bytes, None], first: bytes, response_format: str
) -> AsyncGenerator[bytes, None]:
    """The engine's PCM in the client's format, as it is synthesized."""
    encoder = speech_encoder(response_format)
    try:
        yield encoder.header() + encoder.feed(first)
        async for chunk in pcm:
            if data := encoder.feed(chunk):
                yield data
        yield encoder.finish()
    finally:
        await pcm.aclose()


async def _chained(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """An upstream's audio, already in the client's format, as it arrives."""
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


async def _settled(
    audio: AsyncGenerator[bytes, None], meter: Meter, usage: Usage
) -> AsyncGenerator[bytes, None]:
    """The audio stream; it settles the call once, however it ends.

    A client that leaves is billed the input (its synthesis had begun). A failure after the
    first audio is not billed and ends the audio early: encoded audio has no room for an error
    object, and a stream whose iterator raises is left hanging open by the ASGI server rather
    than cut off, so the client gets a shorter file instead.
    """
    try:
        async for data in audio:
            yield data
        await close_meter_safely(meter, usage, status=200)
    except Exception as failure:
        logger.warning("speech call %s failed mid-stream: %s", meter.request_id, failure)
        await settle_failure(meter, usage, failure)
    except BaseException as failure:  # the client went away
        await settle_failure(meter, usage, failure)
        raise
    finally:
        await audio.aclose()


def usage_seconds(seconds: int) -> dict[str, Any]:
    """OpenAI's usage object of a transcription billed by duration."""
    return {"type": "duration", "seconds": seconds}


def cost_dollars(cost_micros: int) -> float:
    return cost_micros / MICROS_PER_DOLLAR
