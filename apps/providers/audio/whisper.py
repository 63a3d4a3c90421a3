"""Whisper on faster-whisper (CTranslate2, int8 on CPU): samples in, segments and words out."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.providers.audio.wire import TRANSCRIBE_SAMPLE_RATE

__all__ = ["TranscribeOptions", "WhisperRuntime"]

CPU_THREADS = 2  # the machine's cores; requests run one at a time (see AudioProvider)


@dataclass(frozen=True)
class TranscribeOptions:
    task: str = "transcribe"  # or "translate": any language to English
    language: str | None = None  # ISO-639-1; None: detected
    prompt: str | None = None
    temperature: float = 0.0
    words: bool = False


class WhisperRuntime:
    """One loaded model; `transcribe` is blocking and must run in a worker thread."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel  # heavy: engine process only

                self._model = WhisperModel(
                    str(self._folder), device="cpu", compute_type="int8", cpu_threads=CPU_THREADS
                )

    def segments(
        self, samples: np.ndarray, options: TranscribeOptions
    ) -> tuple[dict[str, Any], Generator[dict[str, Any], None, None]]:
        """(language and duration, the segments): each segment is decoded when it is taken."""
        self.load()
        audio = samples.astype(np.float32) / 32768.0
        segments, info = self._model.transcribe(
            audio,
            task=options.task,
            language=options.language,
            initial_prompt=options.prompt,
            temperature=options.temperature,
            word_timestamps=options.words,
            beam_size=1,  # greedy: 2 shared cores; beam search costs several times more
            vad_filter=False,  # timestamps stay those of the audio as sent
        )
        about = {"language": info.language, "duration": len(samples) / TRANSCRIBE_SAMPLE_RATE}
        return about, (_segment(segment) for segment in segments)


def _segment(segment: Any) -> dict[str, Any]:
    return {
        "id": segment.id - 1,  # faster-whisper counts from 1; OpenAI from 0
        "seek": segment.seek,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
        "words": [
            {"word": word.word.strip(), "start": round(word.start, 3), "end": round(word.end, 3)}
            for word in segment.words or ()
        ],
    }
