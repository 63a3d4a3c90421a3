"""The engine's audio models: loaded on first use in a worker thread, one call at a time.

Whisper and the voices each get a single worker thread (both voices share one): each uses the
machine's two cores fully, so running two calls side by side would only make both slower.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from apps.catalog.entries import CatalogEntry, LocalRoute
from apps.providers.audio.decode import AudioDecodeError, decode_audio
from apps.providers.audio.kokoro import KokoroRuntime
from apps.providers.audio.speech import SpeechRuntime
from apps.providers.audio.uploads import DecodedUploads
from apps.providers.audio.weights import audio_weights_installed, audio_weights_resolve
from apps.providers.audio.whisper import TranscribeOptions, WhisperRuntime
from apps.providers.errors import ProviderError

__all__ = ["AUDIO_RUNTIMES", "SPEECH_RUNTIMES", "AudioProvider", "audio_route"]

Runtime = WhisperRuntime | SpeechRuntime | KokoroRuntime

SPEECH_RUNTIMES = frozenset({"hibari", "kokoro"})
AUDIO_RUNTIMES = frozenset({"whisper", *SPEECH_RUNTIMES})
_END = object()
T = TypeVar("T")


def audio_route(entry: CatalogEntry, runtimes: frozenset[str]) -> LocalRoute:
    """The entry's route to one of `runtimes`, or the 400 for a model of another kind."""
    route = entry.local_route
    if route is None or route.runtime not in runtimes:
        raise ProviderError(
            f"The model `{entry.id}` does not serve this endpoint.",
            status=400,
            code="model_not_supported",
            param="model",
        )
    return route


class AudioProvider:
    def __init__(self) -> None:
        self._runtimes: dict[str, Runtime] = {}
        self._loading = threading.Lock()
        self._whisper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self._speech = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speech")
        # Decoding has a thread of its own: a probe must not wait behind a long transcription.
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self.uploads = DecodedUploads()

    def is_available(self, entry: CatalogEntry) -> bool:
        route = entry.local_route
        return route is not None and audio_weights_installed(route.weights)

    def is_loaded(self, entry: CatalogEntry) -> bool:
        route = entry.local_route
        runtime = self._runtimes.get(route.weights) if route is not None else None
        return runtime is not None and runtime.is_loaded

    async def load(self, entry: CatalogEntry) -> None:
        """Load the entry's model now rather than on its first request."""
        route = entry.local_route
        if route is None or route.runtime not in AUDIO_RUNTIMES:
            raise ProviderError(f"`{entry.id}` is not an audio model.", status=400)
        pool = self._whisper if route.runtime == "whisper" else self._speech
        await asyncio.get_running_loop().run_in_executor(pool, self._load, route)

    def _load(self, route: LocalRoute) -> None:
        self._runtime(route).load()

    async def probe(self, data: bytes, *, keep: bool) -> tuple[str, int]:
        """(probe id, sample count) of an upload decoded to 16 kHz mono; its samples are kept
        for the transcription that follows when `keep`. A 400 for audio we cannot decode."""
        loop = asyncio.get_running_loop()
        try:
            samples = await loop.run_in_executor(self._decoder, decode_audio, data)
        except AudioDecodeError as failure:
            raise ProviderError(
                str(failure), status=400, code="invalid_audio", param="file"
            ) from None
        return (self.uploads.put(samples) if keep else ""), int(samples.size)

    async def transcribe(
        self, entry: CatalogEntry, samples: np.ndarray, options: TranscribeOptions
    ) -> AsyncGenerator[dict[str, Any], None]:
        """`{"info": {language, duration}}`, then `{"segment": …}` for each segment as Whisper
        decodes it; closing it stops after the segment being decoded."""
        route = audio_route(entry, frozenset({"whisper"}))
        loop = asyncio.get_running_loop()
        about, segments = await loop.run_in_executor(
            self._whisper, self._segments, route, samples, options
        )
        yield {"info": about}
        async for segment in _drained(self._whisper, segments):
            yield {"segment": segment}

    def _segments(
        self, route: LocalRoute, samples: np.ndarray, options: TranscribeOptions
    ) -> tuple[dict[str, Any], Generator[dict[str, Any], None, None]]:
        runtime = self._runtime(route)
        assert isinstance(runtime, WhisperRuntime)
        return runtime.segments(samples, options)

    async def speak(
        self, entry: CatalogEntry, text: str, *, speed: float, voice: str
    ) -> AsyncIterator[bytes]:
        """int16 PCM of each sentence as it is synthesized; closing it stops after the
        sentence being synthesized."""
        route = audio_route(entry, SPEECH_RUNTIMES)
        if voice not in entry.voices:
            raise ProviderError(
                f"`{voice}` is not a voice of `{entry.id}`.", status=400, param="voice"
            )
        loop = asyncio.get_running_loop()
        sentences = await loop.run_in_executor(
            self._speech, self._sentences, route, text, speed, voice
        )
        async for samples in _drained(self._speech, sentences):
            yield _pcm16(samples)

    def _sentences(
        self, route: LocalRoute, text: str, speed: float, voice: str
    ) -> Generator[np.ndarray, None, None]:
        runtime = self._runtime(route)
        assert isinstance(runtime, SpeechRuntime | KokoroRuntime)
        try:
            runtime.load()  # here, so that a model that cannot load fails before any audio
        except Exception as failure:  # a runtime or front end missing from the install
            raise ProviderError(
                f"The voice cannot be loaded: {failure}", status=503, code="model_unavailable"
            ) from failure
        return runtime.sentences(text, speed=speed, voice=voice)

    def _runtime(self, route: LocalRoute) -> Runtime:
        with self._loading:
            runtime = self._runtimes.get(route.weights)
            if runtime is None:
                runtime = self._runtimes[route.weights] = _new_runtime(route)
        return runtime


async def _drained(pool: ThreadPoolExecutor, items: Generator[T, None, None]) -> AsyncIterator[T]:
    """The items of a blocking generator, each computed in `pool`."""
    loop = asyncio.get_running_loop()
    try:
        while (item := await loop.run_in_executor(pool, next, items, _END)) is not _END:
            yield item  # type: ignore[misc]
    finally:
        # In the pool, after the item it may still be computing: a generator cannot be closed
        # while it runs.
        pool.submit(items.close)


def _new_runtime(route: LocalRoute) -> Runtime:
    try:
        folder = audio_weights_resolve(route.weights)
    except Exception as failure:
        raise ProviderError(
            f"The audio model cannot be loaded: {failure}", status=503, code="model_unavailable"
        ) from failure
    if route.runtime == "whisper":
        return WhisperRuntime(folder)
    if route.runtime == "kokoro":
        return KokoroRuntime(folder)
    return SpeechRuntime(folder / "hibari.onnx")


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
