"""The engine's audio endpoints (apps.providers.audio.wire): transcription and speech.

A transcription streams NDJSON like a generation (the server's `_stream_response`); speech
streams raw PCM, written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apps.catalog.entries import CatalogEntry
from apps.providers import engine_wire
from apps.providers.audio import wire
from apps.providers.audio.provider import AudioProvider, audio_route
from apps.providers.audio.whisper import TranscribeOptions
from apps.providers.errors import ProviderError

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def probe(
    provider: AudioProvider, query: dict[str, list[str]], body: bytes
) -> dict[str, Any]:
    """The probe's answer (apps.providers.audio.wire), or a 400 ProviderError."""
    keep = (query.get("keep") or ["true"])[0] == "true"
    probe_id, sample_count = await provider.probe(body, keep=keep)
    return {
        "probe_id": probe_id,
        "sample_count": sample_count,
        "sample_rate": wire.TRANSCRIBE_SAMPLE_RATE,
    }


def transcription(
    provider: AudioProvider, entry: CatalogEntry, query: dict[str, list[str]]
) -> AsyncGenerator[dict[str, Any], None]:
    """The chunks of a transcription (see AudioProvider.transcribe), or a 400 ProviderError."""
    options = _options(query)
    audio_route(entry, frozenset({"whisper"}))  # before the samples are taken
    samples = provider.uploads.take((query.get("probe_id") or [""])[0])
    if samples is None:
        raise ProviderError(
            "No probed audio under this probe_id (never probed, taken, or expired).",
            status=400,
            code="invalid_audio",
            param="probe_id",
        )
    if samples.size == 0:
        raise ProviderError("The audio is empty.", status=400, code="invalid_audio")
    return provider.transcribe(entry, samples, options)


def _options(query: dict[str, list[str]]) -> TranscribeOptions:
    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    task = one("task") or "transcribe"
    if task not in wire.TRANSCRIBE_TASKS:
        raise ProviderError(f"Unknown task {task!r}.", status=400, param="task")
    try:
        temperature = float(one("temperature") or 0)
    except ValueError:
        raise ProviderError("Invalid temperature.", status=400, param="temperature") from None
    return TranscribeOptions(
        task=task,
        language=one("language"),
        prompt=one("prompt"),
        temperature=temperature,
        words=one("words") == "true",
    )


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str
    speed: float


def speech_request(body: bytes) -> SpeechRequest:
    """The fields of a speak request, or a 400 ProviderError."""
    with contextlib.suppress(ValueError):
        payload = json.loads(body)
        if (
            isinstance(payload, dict)
            and isinstance(payload.get("model"), str)
            and isinstance(payload.get("input"), str)
            and isinstance(payload.get("voice"), str)
            and isinstance(payload.get("speed", 1.0), int | float)
        ):
            return SpeechRequest(
                payload["model"], payload["input"], payload["voice"], float(payload.get("speed", 1))
            )
    raise ProviderError("A speak request needs `model`, `input`, `voice` and `speed`.", status=400)


async def speak(
    provider: AudioProvider,
    entry: CatalogEntry,
    request: SpeechRequest,
    receive: Receive,
    send: Send,
) -> None:
    """Stream PCM as it is synthesized, until done or the client goes away."""
    stream = provider.speak(entry, request.input, speed=request.speed, voice=request.voice)
    pump = asyncio.ensure_future(_pump(stream, send))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, gone):
            task.cancel()
        await asyncio.gather(pump, gone, return_exceptions=True)
        await stream.aclose()  # type: ignore[attr-defined]
    if not pump.cancelled() and pump.exception() is not None:
        logger.error("speech stream failed", exc_info=pump.exception())


async def _pump(stream: AsyncIterator[bytes], send: Send) -> None:
    try:
        first = await anext(stream, b"")
    except ProviderError as failure:  # before any audio: answer with its own status
        await _json(send, failure.status, engine_wire.error_body(failure))
        return
    headers = [(b"content-type", wire.PCM_CONTENT_TYPE.encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": first, "more_body": True})
    # A failure from here on propagates: the server then cuts the response off unfinished,
    # which the client sees as a broken stream (raw PCM has no room for an error object).
    async for pcm in stream:
        await send({"type": "http.response.body", "body": pcm, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _json(send: Send, status: int, body: Any) -> None:
    data = engine_wire.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
