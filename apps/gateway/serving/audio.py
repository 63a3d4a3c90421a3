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
    characters = len(request.input)
    meter = await audio_meter_open(
        ctx=ctx, entry=entry, endpoint="audio.speech", units=characters, is_stream=True
    )
    usage = Usage(prompt_tokens=characters)
    pcm = local_engine().speak_stream(
        entry, request.input, voice=request.voice, speed=request.speed
    )
    # The first sentence is synthesized before the response starts, so a failure to load or
    # synthesize still gets its own status (and leaves no hold).
    first = await settled_on_failure(meter, Usage(), _first(pcm))
    return Speech(
        _encoded(pcm, first, request.response_format, meter, usage),
        CONTENT_TYPES[request.response_format],
        audio_cost_micros(entry=entry, units=characters),
    )


async def _first(pcm: AsyncIterator[bytes]) -> bytes:
    try:
        return await anext(pcm)
    except StopAsyncIteration:
        raise ProviderError("The input produced no speech.", status=400, param="input") from None


async def _encoded(
    pcm: AsyncGenerator[bytes, None],
    first: bytes,
    response_format: str,
    meter: Meter,
    usage: Usage,
) -> AsyncGenerator[bytes, None]:
    """The encoded stream; it settles the call once, however it ends.

    A client that leaves is billed the input (its synthesis had begun). A failure after the
    first audio is not billed and ends the audio early: encoded audio has no room for an error
    object, and a stream whose iterator raises is left hanging open by the ASGI server rather
    than cut off, so the client gets a shorter file instead.
    """
    encoder = speech_encoder(response_format)
    try:
        yield encoder.header() + encoder.feed(first)
        async for chunk in pcm:
            if data := encoder.feed(chunk):
                yield data
        yield encoder.finish()
        await close_meter_safely(meter, usage, status=200)
    except Exception as failure:
        logger.warning("speech call %s failed mid-stream: %s", meter.request_id, failure)
        await settle_failure(meter, usage, failure)
    except BaseException as failure:  # the client went away
        await settle_failure(meter, usage, failure)
        raise
    finally:
        await pcm.aclose()


def usage_seconds(seconds: int) -> dict[str, Any]:
    """OpenAI's usage object of a transcription billed by duration."""
    return {"type": "duration", "seconds": seconds}


def cost_dollars(cost_micros: int) -> float:
    return cost_micros / MICROS_PER_DOLLAR
