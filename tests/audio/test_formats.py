"""A transcript in each of OpenAI's response formats."""

from apps.gateway.serving.audio_formats import transcript_body
from apps.gateway.serving.transcription import Transcript

RESULT = {
    "task": "transcribe",
    "language": "en",
    "duration": 3661.25,
    "text": "Hello there. General Kenobi.",
    "segments": [
        {"id": 0, "start": 0.0, "end": 1.5, "text": " Hello there."},
        {"id": 1, "start": 3660.0, "end": 3661.25, "text": " General Kenobi."},
    ],
    "words": [{"word": "Hello", "start": 0.0, "end": 0.5}],
}
TRANSCRIPT = Transcript(RESULT, seconds=3662, cost_micros=109_860)


def test_json_has_the_text_and_the_usage_in_seconds():
    body, content_type = transcript_body(TRANSCRIPT, response_format="json", words=False)
    assert content_type == "application/json"
    assert body == {
        "text": "Hello there. General Kenobi.",
        "usage": {"type": "duration", "seconds": 3662, "cost": 0.10986},
    }


def test_text_is_the_plain_transcript():
    assert transcript_body(TRANSCRIPT, response_format="text", words=False) == (
        "Hello there. General Kenobi.\n",
        "text/plain; charset=utf-8",
    )


def test_srt_numbers_cues_from_one_with_comma_milliseconds():
    body, _ = transcript_body(TRANSCRIPT, response_format="srt", words=False)
    assert body == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n01:01:00,000 --> 01:01:01,250\nGeneral Kenobi.\n"
    )


def test_vtt_starts_with_its_signature_and_uses_dot_milliseconds():
    body, content_type = transcript_body(TRANSCRIPT, response_format="vtt", words=False)
    assert content_type == "text/vtt; charset=utf-8"
    assert body == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
        "01:01:00.000 --> 01:01:01.250\nGeneral Kenobi.\n"
    )


def test_verbose_json_carries_words_only_when_asked():
    without, _ = transcript_body(TRANSCRIPT, response_format="verbose_json", words=False)
    with_words, _ = transcript_body(TRANSCRIPT, response_format="verbose_json", words=True)
    assert "words" not in without
    assert with_words["words"] == RESULT["words"]
    assert (without["task"], without["language"], without["duration"]) == (
        "transcribe",
        "english",  # OpenAI names the language; Whisper's code stays in the engine's answer
        3661.25,
    )
    assert without["segments"] == RESULT["segments"]
