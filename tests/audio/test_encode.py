"""Speech encoders: every format decodes back to the audio that went in."""

import struct

import numpy as np
import pytest

from apps.providers.audio.decode import AudioDecodeError, decode_audio
from apps.providers.audio.encode import encoded

TWO_SECONDS = (np.sin(2 * np.pi * 440 * np.arange(48_000) / 24_000) * 8000).astype("<i2")
CHUNKS = [TWO_SECONDS[:20_000].tobytes(), TWO_SECONDS[20_000:].tobytes()]


@pytest.mark.parametrize(
    ("response_format", "tolerance_s"),
    [("wav", 0.0), ("flac", 0.0), ("opus", 0.0), ("mp3", 0.07), ("aac", 0.05)],
)
def test_each_format_decodes_to_the_same_duration(response_format, tolerance_s):
    data = b"".join(encoded(response_format, iter(CHUNKS)))
    seconds = decode_audio(data).size / 16_000
    # mp3 and aac pad with their encoder delay; the others are exact.
    assert 2.0 <= seconds <= 2.0 + tolerance_s


def test_pcm_is_the_samples_unchanged():
    assert b"".join(encoded("pcm", iter(CHUNKS))) == TWO_SECONDS.tobytes()


def test_a_streamed_wav_header_says_its_sizes_are_unknown():
    data = b"".join(encoded("wav", iter(CHUNKS)))
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", data[4:8]) == (0xFFFFFFFF,)
    assert struct.unpack("<HHIIHH", data[20:36]) == (1, 1, 24_000, 48_000, 2, 16)
    assert data[36:40] == b"data" and struct.unpack("<I", data[40:44]) == (0xFFFFFFFF,)
    assert data[44:] == TWO_SECONDS.tobytes()


def test_decoding_resamples_to_16_khz_mono():
    samples = decode_audio(b"".join(encoded("wav", iter(CHUNKS))))
    assert (samples.dtype, samples.size) == (np.dtype("<i2"), 32_000)


@pytest.mark.parametrize("data", [b"", b"not audio" * 100, b"RIFF\xff\xff\xff\xffWAVE"])
def test_what_is_not_audio_is_refused(data):
    with pytest.raises(AudioDecodeError):
        decode_audio(data)
