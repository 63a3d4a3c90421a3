"""Audio prices: seconds of audio, characters of input, in integer micro-dollars."""

import pytest

from apps.billing.pricing import audio_cost_micros, billed_audio_seconds, call_cost_micros
from apps.catalog.audio_models import AUDIO_MODELS
from apps.catalog.builtin import BUILTIN_MODELS

WHISPER_BASE, WHISPER_TINY, TTS, TTS_JA = AUDIO_MODELS
CHAT = BUILTIN_MODELS[0]


@pytest.mark.parametrize(
    ("samples", "seconds"), [(1, 1), (16_000, 1), (16_001, 2), (160_000, 10), (0, 1)]
)
def test_audio_is_billed_by_whole_seconds_rounded_up_at_least_one(samples, seconds):
    assert billed_audio_seconds(sample_count=samples, sample_rate=16_000) == seconds


def test_transcription_costs_its_price_per_second():
    assert audio_cost_micros(entry=WHISPER_BASE, units=7) == 7 * 60
    assert audio_cost_micros(entry=WHISPER_TINY, units=7) == 7 * 30


def test_speech_costs_per_million_characters_rounded_up_once():
    assert audio_cost_micros(entry=TTS, units=76) == 380
    cheap = type(TTS)(**{**TTS.__dict__, "input_price_micros_per_mchar": 1_500_000})
    assert audio_cost_micros(entry=cheap, units=3) == 5  # 4.5 rounded up


def test_the_meter_prices_audio_units_counted_as_prompt_tokens():
    assert call_cost_micros(entry=WHISPER_BASE, prompt_tokens=7, completion_tokens=0) == 420
    assert call_cost_micros(entry=TTS, prompt_tokens=76, completion_tokens=0) == 380


def test_a_text_model_is_not_priced_as_audio():
    with pytest.raises(ValueError, match="not an audio model"):
        audio_cost_micros(entry=CHAT, units=1)
    with pytest.raises(ValueError, match="negative"):
        audio_cost_micros(entry=TTS, units=-1)


def test_audio_models_are_listed_with_their_kind_voices_and_prices():
    assert [(e.id, e.kind.value) for e in AUDIO_MODELS] == [
        ("plugsky-whisper-base", "transcription"),
        ("plugsky-whisper-tiny-en", "transcription"),
        ("plugsky-tts", "speech"),
        ("plugsky-tts-ja", "speech"),
    ]
    assert WHISPER_BASE.public_fields()["pricing"] == {"usd_per_audio_second": 0.00006}
    assert TTS.public_fields()["pricing"] == {"usd_per_mchar": 5.0}
    assert TTS.public_fields()["voices"] == ["heart"]
    assert TTS_JA.public_fields()["pricing"] == {"usd_per_mchar": 15.0}
    assert audio_cost_micros(entry=TTS_JA, units=24) == 360
    assert "voices" not in WHISPER_BASE.public_fields()
