"""Synthesized 24 kHz mono int16 PCM to the client's format, chunk by chunk as it arrives.

wav and pcm are written here; mp3 (LAME), opus (in Ogg), aac (ADTS) and flac by the encoders
inside PyAV's FFmpeg. A streamed WAV cannot know its length when its header is sent, so its
RIFF and data sizes say 0xFFFFFFFF, as OpenAI's streamed WAV does; players read to the end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import av
import numpy as np

from apps.providers.audio.wire import SPEECH_SAMPLE_RATE

__all__ = ["CONTENT_TYPES", "SpeechEncoder", "speech_encoder"]

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
# response_format -> (container, codec) for PyAV
_CODECS = {
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
    "flac": ("flac", "flac"),
}
_UNKNOWN_SIZE = 0xFFFFFFFF


class SpeechEncoder:
    """Raw PCM out as it comes in (the base for pcm)."""

    def header(self) -> bytes:
        return b""

    def feed(self, pcm: bytes) -> bytes:
        return pcm

    def finish(self) -> bytes:
        return b""


class _WavEncoder(SpeechEncoder):
    def header(self) -> bytes:
        byte_rate = SPEECH_SAMPLE_RATE * 2
        return (
            b"RIFF" + struct.pack("<I", _UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SPEECH_SAMPLE_RATE, byte_rate, 2, 16)
            + b"data" + struct.pack("<I", _UNKNOWN_SIZE)
        )  # fmt: skip


class _Sink:
    """A write-only file for PyAV's muxer whose bytes are taken as they are written."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._pieces.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._pieces = b"".join(self._pieces), []
        return data


class _CodecEncoder(SpeechEncoder):
    def __init__(self, container_format: str, codec: str) -> None:
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=container_format)
        rate = 48_000 if codec == "libopus" else SPEECH_SAMPLE_RATE  # Opus has fixed rates
        stream = self._container.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        self._stream = stream
        self._resampler = av.AudioResampler(
            format=self._stream.codec_context.format.name, layout="mono", rate=rate
        )
        self._pts = 0

    def feed(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SPEECH_SAMPLE_RATE
        self._encode(self._resampler.resample(frame))
        return self._sink.take()

    def finish(self) -> bytes:
        self._encode(self._resampler.resample(None))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            frame.pts = self._pts
            self._pts += frame.samples
            for packet in self._stream.encode(frame):
                self._container.mux(packet)


def speech_encoder(response_format: str) -> SpeechEncoder:
    if response_format == "wav":
        return _WavEncoder()
    if response_format == "pcm":
        return SpeechEncoder()
    container_format, codec = _CODECS[response_format]
    return _CodecEncoder(container_format, codec)


def encoded(response_format: str, pcm_chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The whole encoded file for `pcm_chunks` (tests and small tools)."""
    encoder = speech_encoder(response_format)
    yield encoder.header()
    for pcm in pcm_chunks:
        yield encoder.feed(pcm)
    yield encoder.finish()
