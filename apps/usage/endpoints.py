"""What each UsageRecord.endpoint counts, and the families the usage reports group them into.

Audio calls store their billed units in prompt_tokens: seconds of audio for transcriptions and
translations, input characters for speech. Everything else counts tokens.
"""

from __future__ import annotations

from enum import StrEnum

# OpenAI's admin API reports these families as /usage/completions, /embeddings, /audio_speeches
# and /audio_transcriptions; the Responses and Messages APIs are chat under another wire format.
COMPLETIONS_ENDPOINTS = ("chat.completions", "completions", "responses", "messages")
EMBEDDINGS_ENDPOINTS = ("embeddings",)
AUDIO_SPEECH_ENDPOINTS = ("audio.speech",)
AUDIO_TRANSCRIPTION_ENDPOINTS = ("audio.transcriptions", "audio.translations")


class Unit(StrEnum):
    TOKENS = "tokens"
    SECONDS = "seconds"
    CHARACTERS = "characters"


def unit_of(endpoint: str) -> Unit:
    """What an endpoint's prompt_tokens count."""
    if endpoint in AUDIO_TRANSCRIPTION_ENDPOINTS:
        return Unit.SECONDS
    if endpoint in AUDIO_SPEECH_ENDPOINTS:
        return Unit.CHARACTERS
    return Unit.TOKENS
