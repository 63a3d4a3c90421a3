"""Thin views for /v1/audio: multipart transcriptions and translations, streamed speech."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.multipartparser import MultiPartParserError

from apps.billing.pricing import COST_HEADER, cost_header_value
from apps.gateway import sse
from apps.gateway.endpoint import endpoint
from apps.gateway.serving import audio, transcription
from apps.gateway.serving.audio import Speech
from apps.gateway.serving.audio_formats import transcript_body
from apps.gateway.serving.common import CallContext, model_access_check
from apps.gateway.serving.transcription import PassedTranscript, Transcript, TranscriptEvents
from apps.protocol import errors
from apps.protocol.audio import (
    MAX_FILE_BYTES,
    AudioUpload,
    SpeechRequest,
    TranscriptionRequest,
    parse_transcription,
)
from apps.protocol.openai import parse_body

# The form around the file (model, prompt …) is small; anything beyond is refused unread.
_MAX_FORM_OVERHEAD_BYTES = 1024 * 1024


def _context(request: HttpRequest, model_id: str) -> CallContext:
    identity = request.identity  # type: ignore[attr-defined]
    model_access_check(model_id, identity=identity)
    return CallContext(
        request_id=request.request_id,  # type: ignore[attr-defined]
        organization_id=identity.organization_id,
        api_key_id=identity.key_id,
    )


async def transcription_form_read(
    request: HttpRequest,
) -> tuple[TranscriptionRequest, AudioUpload]:
    """The transcription form's fields and its file, or an APIError (413, 400): shared with the
    tester's audio, which posts the same form."""
    if int(request.headers.get("Content-Length") or 0) > MAX_FILE_BYTES + _MAX_FORM_OVERHEAD_BYTES:
        raise errors.request_too_large(MAX_FILE_BYTES)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise errors.invalid_value(
            "This endpoint takes multipart/form-data with the audio in `file`.",
            param=None,
            code="unsupported_content_type",
        )
    # Parsing a 25 MB form and reading its file back from disk blocks: not on the event loop.
    try:
        return await asyncio.to_thread(lambda: parse_transcription(request.POST, request.FILES))
    except MultiPartParserError as failure:
        raise errors.invalid_value(f"Invalid multipart body: {failure}", param=None) from None


def transcript_response(
    transcript: Transcript | PassedTranscript | TranscriptEvents, body: TranscriptionRequest
) -> HttpResponseBase:
    """A transcript in the request's format, or its event stream."""
    if isinstance(transcript, TranscriptEvents):
        return _event_stream(transcript.events)
    if isinstance(transcript, PassedTranscript):  # as the upstream wrote it
        content, content_type = transcript.body, transcript.content_type
    else:
        content, content_type = transcript_body(
            transcript,
            response_format=body.response_format,
            words="word" in body.timestamp_granularities,
        )
    response: HttpResponse = (
        JsonResponse(content)
        if isinstance(content, dict)
        else HttpResponse(content, content_type=content_type)
    )
    response[COST_HEADER] = cost_header_value(transcript.cost_micros)
    return response


def speech_response(speech: Speech) -> StreamingHttpResponse:
    response = StreamingHttpResponse(speech.chunks, content_type=speech.content_type)
    response[COST_HEADER] = cost_header_value(speech.cost_micros)
    response["X-Accel-Buffering"] = "no"  # proxies must pass audio on as it is synthesized
    return response


async def _transcription(request: HttpRequest, *, translate: bool) -> HttpResponseBase:
    body, upload = await transcription_form_read(request)
    transcript = await transcription.transcribe(
        body, upload, _context(request, body.model), translate=translate
    )
    return transcript_response(transcript, body)


def _event_stream(events: AsyncGenerator[dict[str, Any], None]) -> StreamingHttpResponse:
    """Server-sent events as OpenAI streams a transcript: `data: <json>`, no `[DONE]`."""

    async def encoded() -> AsyncIterator[bytes]:
        try:
            async for payload in events:
                yield sse.event(payload)
        finally:
            await events.aclose()  # a client gone: the call settles now

    response = StreamingHttpResponse(encoded(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@endpoint("POST")
async def transcriptions_create(request: HttpRequest) -> HttpResponseBase:
    return await _transcription(request, translate=False)


@endpoint("POST")
async def translations_create(request: HttpRequest) -> HttpResponseBase:
    return await _transcription(request, translate=True)


@endpoint("POST")
async def speech_create(request: HttpRequest) -> HttpResponseBase:
    body = parse_body(request.body, SpeechRequest, content_type=request.content_type)
    return speech_response(await audio.speak(body, _context(request, body.model)))
