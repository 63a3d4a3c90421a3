"""The Japanese voice against a live server, through the official openai SDK: a Japanese
sentence spoken by Kokoro comes back from Whisper base as the same characters, billed exactly.

Japanese is written without spaces between words, so the word error rate of the English tests
has no words to count: the bound is on the character error rate, the measure Japanese speech
recognition is scored by. 10 % (2 characters of this 24) leaves room for what a correct
transcript may still differ by: a word written in kana rather than kanji (良い / いい) or a
numeral; it fails anything that dropped or misheard a phrase (a clause is 6+ characters).
Punctuation and spaces are not counted: Whisper places them as it likes (it puts a space
between sentences).
"""

import io
import unicodedata
import wave

import openai
import pytest

from apps.usage.models import UsageRecord

JAPANESE = "今日はとても良い天気ですね。公園を散歩しましょう。"
MAX_CHARACTER_ERROR_RATE = 0.10


def _characters(text):
    normalized = unicodedata.normalize("NFKC", text)
    return [c for c in normalized if not unicodedata.category(c).startswith(("P", "Z", "C"))]


def _character_error_rate(reference, hypothesis):
    """Character-level edit distance over the reference's length (punctuation left out)."""
    ref, hyp = _characters(reference), _characters(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, char in enumerate(ref, start=1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (char != other))
    return row[-1] / len(ref)


def test_the_character_error_rate_counts_edits_without_punctuation():
    assert _character_error_rate("今日は、晴れ。", "今日は 晴れ") == 0.0
    assert _character_error_rate("今日は晴れ", "今日わ晴") == 0.4
    full_width = "\uff21\uff22"  # full-width A and B: the same once normalized
    assert _character_error_rate(full_width, "AB") == 0.0


def test_a_japanese_sentence_round_trips_through_the_japanese_voice_and_whisper_base(client):
    speech = client.audio.speech.create(
        model="plugsky-tts-ja", voice="jf_alpha", input=JAPANESE, response_format="wav"
    )
    with wave.open(io.BytesIO(speech.content)) as reader:
        assert (reader.getnchannels(), reader.getframerate()) == (1, 24000)
    seconds = (len(speech.content) - 44) / 2 / 24000
    assert 2.0 < seconds < 8.0  # two short sentences at a speaking pace
    cost = len(JAPANESE) * 15  # 15 µ$ a character
    assert speech.response.headers["x-plugsky-cost"] == f"{cost / 1e6:.6f}"
    record = UsageRecord.objects.get(request_id=speech.response.headers["x-request-id"])
    assert (record.model, record.prompt_tokens, record.cost_micros) == (
        "plugsky-tts-ja",
        len(JAPANESE),
        cost,
    )

    file = ("speech.wav", speech.content, "audio/wav")
    transcript = client.audio.transcriptions.create(
        model="plugsky-whisper-base", file=file, language="ja"
    )
    assert _character_error_rate(JAPANESE, transcript.text) <= MAX_CHARACTER_ERROR_RATE, (
        transcript.text
    )
    detected = client.audio.transcriptions.create(
        model="plugsky-whisper-base", file=file, response_format="verbose_json"
    )
    assert detected.language == "japanese"  # detected, and named as OpenAI names it
    assert _character_error_rate(JAPANESE, detected.text) <= MAX_CHARACTER_ERROR_RATE


def test_the_japanese_voices_are_listed_and_an_english_voice_is_refused(client):
    listed = {model.id: model for model in client.models.list()}
    assert listed["plugsky-tts-ja"].kind == "speech"  # type: ignore[attr-defined]
    voices = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
    assert listed["plugsky-tts-ja"].voices == voices  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.speech.create(model="plugsky-tts-ja", voice="heart", input="こんにちは。")
    assert raised.value.body["param"] == "voice"
    assert raised.value.body["message"].endswith(f"Supported voices: {', '.join(voices)}.")
