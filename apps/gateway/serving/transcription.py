"""POST /v1/audio/transcriptions and /translations on the engine's Whisper models, or passed
through to an OpenAI-compatible upstream route.

The upload is decoded first, by the engine (a probe, apps.providers.audio.uploads): its exact
duration is what the call holds and is charged (apps.gateway.serving.audio), and audio that
cannot be decoded is refused before anything is held. Whisper's segments stream from the engine
as they are decoded; `stream=true` passes them on as OpenAI's `transcript.text.delta` events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from apps.billing.pricing import billed_audio_seconds
from apps.catalog.entries import Kind
from apps.gateway.metering import Meter, meter_precheck
from apps.gateway.serving.audio import (
    audio_meter_open,
    audio_model_resolve,
    cost_dollars,
    usage_seconds,
)
from apps.gateway.serving.audio_routes import AudioRoute, audio_routes, first_served
from apps.gateway.serving.common import CallContext, api_error_from, stream_close
from apps.gateway.serving.generation import close_meter_safely, settle_failure, settled_on_failure
from apps.protocol import errors
from apps.protocol.audio import AudioUpload, TranscriptionRequest
from apps.providers.audio.wire import TRANSCRIBE_SAMPLE_RATE
from apps.providers.base import Usage
from apps.providers.errors import ProviderError
from apps.providers.registry import local_engine
from apps.providers.upstream.openai_audio import OpenAIAudioUpstream, UpstreamTranscript

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


@dataclass(frozen=True)
class PassedTranscript:
    """An upstream's whole transcript, passed on: JSON (its usage replaced by what Plugsky
    charged) or the text of the other formats, as the upstream wrote it."""

    body: str | dict[str, Any]
    content_type: str
    seconds: int
    cost_micros: int


async def transcribe(
    request: TranscriptionRequest, upload: AudioUpload, ctx: CallContext, *, translate: bool
) -> Transcript | PassedTranscript | TranscriptEvents:
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
    routes = await audio_routes(entry)
    # Decoding costs the web process real work: only for an organization with credit for at
    # least one billed second (as chat checks before compiling grammars or reading images).
    await meter_precheck(
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        entry=entry,
        max_prompt_tokens=1,
        max_completion_tokens=0,
    )
    # Before the hold: undecodable audio holds nothing. The engine decodes (not this web
    # process: seconds of CPU and a few times the samples in memory for a long file) and keeps
    # the samples for its transcription; upstream routes too are billed by that duration,
    # which is what the hold covers exactly.
    keep = any(route.upstream is None for route in routes)
    probe_id, sample_count = await _probed(upload.data, keep=keep)
    seconds = billed_audio_seconds(sample_count=sample_count, sample_rate=TRANSCRIBE_SAMPLE_RATE)
    meter = await audio_meter_open(
        ctx=ctx, entry=entry, endpoint=endpoint, units=seconds, is_stream=request.stream
    )

    async def attempt(route: AudioRoute) -> _Served:
        if route.upstream is None:
            chunks = local_engine().transcribe_stream(
                entry, probe_id=probe_id, options=_options(request, translate=translate)
            )
            # The engine's first chunk (language, duration) exists once the model is loaded
            # and has started: a failure before it still gets its own status.
            return _Local(chunks, await _info(chunks))
        return await _upstream_attempt(route.upstream, request, upload, translate=translate)

    served, route = await settled_on_failure(meter, Usage(), first_served(routes, attempt))
    usage = Usage(
        prompt_tokens=seconds,
        provider=route.provider,
        route_index=route.index,
        upstream_model=route.upstream_model,
    )
    if isinstance(served, _PassedEvents):
        return TranscriptEvents(_passed_events(served, meter, usage))
    if isinstance(served, UpstreamTranscript):
        passed = _passed(served, request.response_format, meter, usage)
        return await settled_on_failure(meter, Usage(), passed)
    if request.stream:
        return TranscriptEvents(_events(served.chunks, meter, usage))
    work = _collected(served.chunks, served.info, meter, usage, task=_task(translate))
    return await settled_on_failure(meter, Usage(), work)  # a failed call used nothing


@dataclass(frozen=True)
class _Local:
    chunks: AsyncIterator[Chunk]
    info: dict[str, Any]


@dataclass(frozen=True)
class _PassedEvents:
    first: Chunk
    rest: AsyncGenerator[Chunk, None]


_Served = _Local | _PassedEvents | UpstreamTranscript


async def _upstream_attempt(
    upstream: OpenAIAudioUpstream,
    request: TranscriptionRequest,
    upload: AudioUpload,
    *,
    translate: bool,
) -> _PassedEvents | UpstreamTranscript:
    path = "audio/translations" if translate else "audio/transcriptions"
    fields = _upstream_fields(request, translate=translate)
    file = (upload.filename, upload.data, upload.content_type)
    if not request.stream:
        return await upstream.transcript(path, fields=fields, file=file)
    events = upstream.transcript_events(path, fields=fields, file=file)
    first = await anext(events, None)  # its first event: until then, the next route may serve
    if first is None:
        raise ProviderError("The upstream's transcript stream was empty.", status=502,
                            code="upstream_malformed", retryable=True)  # fmt: skip
    return _PassedEvents(first, events)


def _upstream_fields(request: TranscriptionRequest, *, translate: bool) -> list[tuple[str, str]]:
    """The client's form as OpenAI's reference names it (the file and model apart)."""
    fields = [
        ("response_format", request.response_format),
        ("temperature", str(request.temperature)),
    ]
    if request.language and not translate:
        fields.append(("language", request.language))
    if request.prompt:
        fields.append(("prompt", request.prompt))
    if request.response_format == "verbose_json":
        fields += [("timestamp_granularities[]", g) for g in request.timestamp_granularities]
    if request.stream:
        fields.append(("stream", "true"))
    return fields


async def _passed(
    transcript: UpstreamTranscript, response_format: str, meter: Meter, usage: Usage
) -> PassedTranscript:
    body: str | dict[str, Any]
    if response_format in {"json", "verbose_json"}:
        try:
            body = json.loads(transcript.content)
        except ValueError:
            body = None  # type: ignore[assignment]
        if not isinstance(body, dict):
            raise ProviderError("The upstream's transcript is not a JSON object.", status=502,
                                code="upstream_malformed")  # fmt: skip
    else:
        body = transcript.content.decode("utf-8", errors="replace")
    cost = await close_meter_safely(meter, usage, status=200)
    if isinstance(body, dict):  # what was charged, not what the upstream counted
        body["usage"] = {**usage_seconds(usage.prompt_tokens), "cost": cost_dollars(cost)}
    return PassedTranscript(body, transcript.content_type, usage.prompt_tokens, cost)


async def _passed_events(
    served: _PassedEvents, meter: Meter, usage: Usage
) -> AsyncGenerator[Chunk, None]:
    """An upstream's transcript events as they come; settles the call once (a failure after
    the first event is one error event, unbilled)."""
    try:
        yield served.first
        async for event in served.rest:
            yield event
        await close_meter_safely(meter, usage, status=200)
    except ProviderError as failure:
        await settle_failure(meter, usage, failure)
        yield api_error_from(failure).body()
    except BaseException as failure:
        await settle_failure(meter, usage, failure)
        raise
    finally:
        await served.rest.aclose()


async def _probed(audio: bytes, *, keep: bool) -> tuple[str, int]:
    try:
        return await local_engine().probe_audio(audio, keep=keep)
    except ProviderError as failure:
        if failure.code == "invalid_audio":
            raise errors.invalid_value(
                "Audio file might be corrupted or unsupported.", param="file", code="invalid_value"
            ) from None
        raise api_error_from(failure) from None


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
