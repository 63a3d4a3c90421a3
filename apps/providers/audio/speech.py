"""hibari TTS (ONNX on onnxruntime): text in, 24 kHz float32 samples out, one sentence at a time."""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SpeechRuntime"]

CPU_THREADS = 2


class SpeechRuntime:
    """One loaded voice; `sentences` is blocking and must run in a worker thread."""

    def __init__(self, model_path: Path) -> None:
        self._model_path = model_path
        self._tts: Any = None
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        return self._tts is not None

    def load(self) -> None:
        with self._lock:
            if self._tts is None:
                from hibari import Hibari  # onnxruntime session: engine process only

                # The verified file, never hibari's own lookup (which may download a voice).
                self._tts = Hibari(model=str(self._model_path), threads=CPU_THREADS)

    def sentences(
        self, text: str, *, speed: float, voice: str = "heart"
    ) -> Generator[np.ndarray, None, None]:
        """Samples of each sentence as soon as it is synthesized (hibari has one voice)."""
        self.load()
        yield from self._tts.stream(text, speed=speed)
