"""The engine's audio endpoints refuse what they cannot serve, without loading a model."""

import asyncio
import io
import wave

import httpx
import numpy as np

from apps.catalog.audio_models import AUDIO_MODELS
from apps.catalog.builtin import BUILTIN_MODELS
from apps.engine.server import EngineApp

CHAT = BUILTIN_MODELS[0]


def _call(method, path, **kwargs):
    app = EngineApp(entries={entry.id: entry for entry in (*AUDIO_MODELS, CHAT)})

    async def call():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            return await client.request(method, path, **kwargs), app

    return asyncio.run(call())


def _error(response):
    return response.status_code, response.json()["error"]["code"], response.json()["error"]["param"]


def test_health_lists_the_audio_models_installed_and_not_loaded():
    response, _ = _call("GET", "/healthz")
    models = response.json()["models"]
    for entry in AUDIO_MODELS:
        assert models[entry.id] == {"installed": True, "loaded": False}


def test_a_chat_model_on_the_audio_endpoints_is_not_found():
    response, _ = _call("POST", "/audio/transcribe", params={"model": CHAT.id, "probe_id": "x"})
    assert _error(response) == (404, "model_not_found", "model")
    body = {"model": CHAT.id, "input": "Hi.", "voice": "heart", "speed": 1.0}
    response, _ = _call("POST", "/audio/speak", json=body)
    assert _error(response) == (404, "model_not_found", "model")


def test_an_audio_model_on_the_chat_endpoint_is_refused():
    body = {"model": "plugsky-tts", "body": {"messages": []}}
    response, _ = _call("POST", "/chat", json=body)
    assert _error(response) == (400, "model_not_supported", "model")


def test_a_speech_model_cannot_transcribe_nor_whisper_speak():
    response, app = _call("POST", "/audio/transcribe", params={"model": "plugsky-tts"})
    assert _error(response) == (400, "model_not_supported", "model")
    body = {"model": "plugsky-whisper-tiny-en", "input": "Hi.", "voice": "heart", "speed": 1.0}
    response, app = _call("POST", "/audio/speak", json=body)
    assert _error(response) == (400, "model_not_supported", "model")
    assert not app.audio.is_loaded(AUDIO_MODELS[1])


def _wav(seconds):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8_000)  # resampled to 16 kHz by the probe
        writer.writeframes(np.zeros(int(seconds * 8_000), dtype="<i2").tobytes())
    return buffer.getvalue()


def test_a_probe_decodes_the_upload_and_keeps_its_samples_for_one_transcription():
    async def probe_then_take():
        app = EngineApp(entries={entry.id: entry for entry in AUDIO_MODELS})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            response = await client.post("/audio/probe", content=_wav(1.5))
        return response, app

    response, app = asyncio.run(probe_then_take())
    body = response.json()
    assert (response.status_code, body["sample_count"], body["sample_rate"]) == (
        200,
        24_000,
        16_000,
    )
    samples = app.audio.uploads.take(body["probe_id"])
    assert samples is not None and samples.size == 24_000
    assert app.audio.uploads.take(body["probe_id"]) is None  # taken once


def test_a_probe_not_kept_keeps_nothing_and_undecodable_audio_is_a_400():
    response, _ = _call("POST", "/audio/probe", params={"keep": "false"}, content=_wav(0.5))
    assert (response.status_code, response.json()["probe_id"]) == (200, "")
    response, _ = _call("POST", "/audio/probe", content=b"not audio" * 40)
    assert _error(response) == (400, "invalid_audio", "file")


def test_an_unknown_probe_and_an_unknown_task_are_400s():
    params = {"model": "plugsky-whisper-tiny-en", "probe_id": "never-probed"}
    response, _ = _call("POST", "/audio/transcribe", params=params)
    assert _error(response) == (400, "invalid_audio", "probe_id")
    response, _ = _call("POST", "/audio/transcribe", params={**params, "task": "summarize"})
    assert _error(response) == (400, None, "task")


def test_a_speak_request_without_input_or_voice_is_a_400():
    response, _ = _call("POST", "/audio/speak", json={"model": "plugsky-tts"})
    assert response.status_code == 400
    response, _ = _call("POST", "/audio/speak", json={"model": "plugsky-tts", "input": "Hi."})
    assert response.status_code == 400


def test_a_voice_of_another_model_is_refused_before_any_model_loads():
    body = {"model": "plugsky-tts-ja", "input": "こんにちは。", "voice": "heart", "speed": 1.0}
    response, app = _call("POST", "/audio/speak", json=body)
    assert _error(response) == (400, None, "voice")
    assert not app.audio.is_loaded(app.entries["plugsky-tts-ja"])
