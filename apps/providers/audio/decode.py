"""Uploaded audio (wav, mp3, m4a, ogg, webm, flac …) to 16 kHz mono int16 samples, with PyAV.

Runs in the engine, for the gateway's probe (apps.providers.audio.uploads): the gateway needs
the exact duration to hold credit, and must refuse audio it cannot decode before holding
anything. No model is involved.
"""

from __future__ import annotations

import io

import av
import numpy as np

from apps.providers.audio.wire import TRANSCRIBE_SAMPLE_RATE

__all__ = ["AudioDecodeError", "decode_audio"]


class AudioDecodeError(Exception):
    """The bytes are not audio in a container and codec we can read."""


def decode_audio(data: bytes) -> np.ndarray:
    """Every audio frame of the first audio stream, resampled to 16 kHz mono int16.

    Blocking (a long file takes a second or more): call it from a worker thread.
    """
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("The file contains no audio stream.")
            return _samples(container)
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as failure:
        raise AudioDecodeError(f"The audio could not be decoded: {failure}") from None


def _samples(container: av.container.InputContainer) -> np.ndarray:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=TRANSCRIBE_SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    for frame in container.decode(container.streams.audio[0]):
        for converted in resampler.resample(frame):
            pieces.append(converted.to_ndarray().reshape(-1))
    for converted in resampler.resample(None):  # what the resampler still holds
        pieces.append(converted.to_ndarray().reshape(-1))
    if not pieces:
        raise AudioDecodeError("The file contains no audio samples.")
    return np.concatenate(pieces).astype("<i2", copy=False)
