"""Audio models in the operator's catalog file: upstream transcription and speech models, read
as strictly as every other entry, and priced per route."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.billing.pricing import audio_cost_micros, worst_case_cost_micros
from apps.catalog.entries import Kind, UpstreamRoute
from apps.catalog.operator_file import load_operator_entries

ROUTE = {"provider": "openai", "base_url": "http://10.0.0.7:8000/v1", "model": "whisper-1",
         "api_key_env": "TEAM_AUDIO_KEY"}  # fmt: skip
WHISPER = {"id": "team-whisper", "kind": "transcription", "routes": [ROUTE],
           "input_price_micros_per_audio_second": 100}  # fmt: skip
TTS = {"id": "team-tts", "kind": "speech", "voices": ["alloy", "nova"],
       "routes": [{**ROUTE, "model": "tts-1"}],
       "input_price_micros_per_mchar": 15_000_000}  # fmt: skip


def _load(tmp_path, *models):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": list(models)}))
    return load_operator_entries(str(path))


def _refusal(tmp_path, model):
    with pytest.raises(ImproperlyConfigured) as raised:
        _load(tmp_path, model)
    return str(raised.value).split(": models[0] ", 1)[1]


def test_upstream_audio_models_are_read_with_their_prices_and_voices(tmp_path):
    whisper, tts = _load(tmp_path, WHISPER, TTS)
    assert (whisper.kind, whisper.capabilities, whisper.context_length) == (
        Kind.TRANSCRIPTION, frozenset({"transcription"}), 3600,
    )  # fmt: skip
    assert whisper.input_price_micros_per_audio_second == 100
    assert whisper.routes == (UpstreamRoute(provider="openai", model="whisper-1",
                                            base_urls=("http://10.0.0.7:8000/v1",),
                                            api_key_env="TEAM_AUDIO_KEY"),)  # fmt: skip
    assert (tts.kind, tts.voices, tts.input_price_micros_per_mchar) == (
        Kind.SPEECH, ("alloy", "nova"), 15_000_000,
    )  # fmt: skip


def test_a_route_prices_audio_of_its_own_and_the_hold_covers_the_dearest(tmp_path):
    dear = {**ROUTE, "input_price_micros_per_audio_second": 250}
    (entry,) = _load(tmp_path, {**WHISPER, "routes": [ROUTE, dear]})
    assert audio_cost_micros(entry=entry, units=4, route_index=0) == 400
    assert audio_cost_micros(entry=entry, units=4, route_index=1) == 1000
    assert worst_case_cost_micros(entry=entry, prompt_tokens=4, completion_tokens=0) == 1000


@pytest.mark.parametrize(
    ("model", "refusal"),
    [
        ({**TTS, "voices": []}, "(team-tts): voices: a speech model names at least one voice"),
        ({key: value for key, value in TTS.items() if key != "voices"},
         "(team-tts): voices: required"),
        ({**WHISPER, "voices": ["alloy"]},
         "(team-whisper): voices: only speech models have voices"),
        ({key: value for key, value in WHISPER.items()
          if key != "input_price_micros_per_audio_second"},
         "(team-whisper): input_price_micros_per_audio_second: required"),
        ({**WHISPER, "input_price_micros_per_mtok": 5},
         "(team-whisper): input_price_micros_per_mtok: a transcription model is priced by "
         "input_price_micros_per_audio_second"),
        ({**TTS, "input_price_micros_per_audio_second": 5},
         "(team-tts): input_price_micros_per_audio_second: a speech model is priced by "
         "input_price_micros_per_mchar"),
        ({**WHISPER, "routes": [{**ROUTE, "provider": "anthropic"}]},
         "(team-whisper): routes[0].provider: audio models are served by OpenAI-compatible "
         "routes only"),
        ({"id": "chat", "kind": "chat", "context_length": 10, "input_price_micros_per_mtok": 1,
          "output_price_micros_per_mtok": 1, "routes": [ROUTE],
          "input_price_micros_per_audio_second": 5},
         "(chat): input_price_micros_per_audio_second: only audio models have "
         "input_price_micros_per_audio_second"),
        ({"id": "local-whisper", "kind": "transcription", "gguf": "/srv/w.gguf",
          "sha256": "0" * 64},
         "(local-whisper): kind: a GGUF file is a text model; audio models are served by routes"),
    ],
)  # fmt: skip
def test_a_malformed_audio_entry_is_refused_naming_the_field(tmp_path, model, refusal):
    assert _refusal(tmp_path, model) == refusal
