"""The engine's audio endpoints refuse what they cannot serve, without loading a model."""

import asyncio

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
    silence = np.zeros(16_000, dtype="<i2").tobytes()
    response, _ = _call("POST", "/audio/transcribe", params={"model": CHAT.id}, content=silence)
    assert _error(response) == (404, "model_not_found", "model")
    body = {"model": CHAT.id, "input": "Hi.", "voice": "heart", "speed": 1.0}
    response, _ = _call("POST", "/audio/speak", json=body)
    assert _error(response) == (404, "model_not_found", "model")


def test_an_audio_model_on_the_chat_endpoint_is_refused():
    body = {"model": "plugsky-tts", "body": {"messages": []}}
    response, _ = _call("POST", "/chat", json=body)
    assert _error(response) == (400, "model_not_supported", "model")


def test_a_speech_model_cannot_transcribe_nor_whisper_speak():
    silence = np.zeros(16_000, dtype="<i2").tobytes()
    response, app = _call(
        "POST", "/audio/transcribe", params={"model": "plugsky-tts"}, content=silence
    )
    assert _error(response) == (400, "model_not_supported", "model")
    body = {"model": "plugsky-whisper-tiny-en", "input": "Hi.", "voice": "heart", "speed": 1.0}
    response, app = _call("POST", "/audio/speak", json=body)
    assert _error(response) == (400, "model_not_supported", "model")
    assert not app.audio.is_loaded(AUDIO_MODELS[1])


def test_empty_audio_and_an_unknown_task_are_400s():
    params = {"model": "plugsky-whisper-tiny-en"}
    response, _ = _call("POST", "/audio/transcribe", params=params, content=b"")
    assert _error(response) == (400, "invalid_audio", None)
    params = {**params, "task": "summarize"}
    response, _ = _call("POST", "/audio/transcribe", params=params, content=b"\0\0")
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
