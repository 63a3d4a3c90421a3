"""Whisper's language codes and the names OpenAI answers with them."""

import faster_whisper.tokenizer

from apps.protocol.audio_languages import LANGUAGE_NAMES, language_name


def test_every_language_of_the_multilingual_models_is_named():
    # faster-whisper's own list also has large-v3's Cantonese, unknown to the base model.
    assert set(LANGUAGE_NAMES) == set(faster_whisper.tokenizer._LANGUAGE_CODES) - {"yue"}
    assert len(set(LANGUAGE_NAMES.values())) == len(LANGUAGE_NAMES)


def test_names_are_openais_lower_case_words():
    assert (language_name("en"), language_name("ja"), language_name("ht")) == (
        "english",
        "japanese",
        "haitian creole",
    )
    assert all(name == name.lower() for name in LANGUAGE_NAMES.values())
