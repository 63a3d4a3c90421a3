"""Audio models on OpenAI-compatible upstream routes, as an operator adds them in the catalog
file: the official openai SDK against a live server whose routes lead to a loopback fake of
OpenAI's audio API (tests/fakes/openai_audio_api.py). Speech and transcripts pass through;
every call is billed at the prices of the route that answered, its hold released."""

from __future__ import annotations

import io
import json
import socket
import wave
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from apps.billing.models import CreditAccount, CreditHold, HoldStatus
from apps.providers.audio.encode import encoded
from apps.usage.models import UsageRecord
from tests.fakes.openai_api import Error
from tests.fakes.openai_audio_api import FakeOpenAIAudio
from tests.fakes.server import serve
from tests.live import run_server

KEY_ENV = "PLUGSKY_TEST_AUDIO_UPSTREAM_KEY"
KEY = "sk-test-audio"
WHISPER_PRICE, WHISPER_ROUTE_PRICE = 100, 80  # µ$ per second: the entry's, the route's own
FALLBACK_FIRST_PRICE = 500
TTS_PRICE, TTS_ROUTE_PRICE = 15_000_000, 12_000_000  # µ$ per million characters


def _refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _route(base_url: str, model: str, **prices: int) -> dict[str, object]:
    return {"provider": "openai", "base_url": base_url, "model": model, "api_key_env": KEY_ENV,
            **prices}  # fmt: skip


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAIAudio, str]]:
    app = FakeOpenAIAudio(api_key=KEY)
    with serve(app) as base_url:
        yield app, f"{base_url}/v1"


@pytest.fixture(scope="module")
def server(fake, tmp_path_factory, django_db_setup, django_db_blocker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    _, fake_url = fake
    models = [
        {"id": "team-whisper", "kind": "transcription",
         "capabilities": ["transcription", "translation"],
         "input_price_micros_per_audio_second": WHISPER_PRICE,
         "routes": [_route(fake_url, "whisper-1",
                           input_price_micros_per_audio_second=WHISPER_ROUTE_PRICE)]},
        {"id": "team-whisper-fallback", "kind": "transcription",
         "input_price_micros_per_audio_second": WHISPER_PRICE,
         "routes": [_route(_refused_url(), "whisper-1",
                           input_price_micros_per_audio_second=FALLBACK_FIRST_PRICE),
                    _route(fake_url, "whisper-1")]},
        {"id": "team-tts", "kind": "speech", "voices": ["alloy", "nova"],
         "input_price_micros_per_mchar": TTS_PRICE,
         "routes": [_route(fake_url, "tts-1", input_price_micros_per_mchar=TTS_ROUTE_PRICE)]},
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    path.write_text(json.dumps({"models": models}))
    running = run_server({"PLUGSKY_CATALOG_FILE": str(path), KEY_ENV: KEY})
    yield next(running)
    running.close()


@pytest.fixture
def upstream(fake):  # type: ignore[no-untyped-def]
    """The fake, reset: no error, nothing received."""
    app, _ = fake
    app.error, app.received = None, []
    return app


@pytest.fixture
def sdk(server, live_key):  # type: ignore[no-untyped-def]
    _, raw_key = live_key
    return openai.OpenAI(base_url=f"{server}/v1", api_key=raw_key, max_retries=0, timeout=60)


def _tone_wav(seconds: float) -> bytes:
    """A real, decodable file: Plugsky decodes it to bill its duration before the upstream."""
    samples = (np.sin(np.arange(int(seconds * 16_000)) * 0.05) * 8000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
        writer.writeframes(samples.tobytes())
    return buffer.getvalue()


def _billed(request_id: str, *, units: int, cost_micros: int, route_index: int = 0) -> UsageRecord:
    record = UsageRecord.objects.get(request_id=request_id)
    assert (record.status, record.prompt_tokens, record.cost_micros) == (200, units, cost_micros)
    assert (record.provider, record.route_index) == ("openai", route_index)
    assert CreditHold.objects.get(request_id=request_id).status == HoldStatus.SETTLED
    return record


def _nothing_left_held(organization) -> None:  # type: ignore[no-untyped-def]
    assert CreditAccount.objects.get(organization=organization).held_micros == 0
    assert not CreditHold.objects.filter(status=HoldStatus.ACTIVE).exists()


def test_speech_passes_through_in_the_asked_format_billed_at_the_routes_price(
    sdk, upstream, live_key
):
    organization, _ = live_key
    upstream.speech = b"".join(encoded("mp3", iter([np.zeros(24_000, "<i2").tobytes()])))
    text = "Hello from an upstream voice."
    speech = sdk.audio.speech.create(model="team-tts", voice="nova", input=text, speed=1.25)
    assert speech.content == upstream.speech  # the upstream's file, unchanged
    assert speech.response.headers["content-type"] == "audio/mpeg"
    sent = upstream.received[-1]
    assert (sent.path, sent.headers["authorization"]) == ("/v1/audio/speech", f"Bearer {KEY}")
    assert sent.json == {"model": "tts-1", "input": text, "voice": "nova",
                         "response_format": "mp3", "speed": 1.25}  # fmt: skip
    cost = -(-len(text) * TTS_ROUTE_PRICE // 1_000_000)
    assert speech.response.headers["x-plugsky-cost"] == f"{cost / 1e6:.6f}"
    record = _billed(speech.response.headers["x-request-id"], units=len(text), cost_micros=cost)
    assert record.upstream_model == "tts-1"
    _nothing_left_held(organization)


def test_streamed_speech_arrives_in_the_upstreams_pieces(sdk, upstream):
    upstream.speech = bytes(range(256)) * 40  # 10 kB: several pieces
    with sdk.audio.speech.with_streaming_response.create(
        model="team-tts", voice="alloy", input="Stream me.", response_format="flac"
    ) as response:
        assert response.headers["content-type"] == "audio/flac"
        received = b"".join(response.iter_bytes())
    assert received == upstream.speech
    assert upstream.received[-1].json["response_format"] == "flac"


def test_a_voice_the_model_does_not_list_is_refused_before_the_upstream(sdk, upstream, live_key):
    organization, _ = live_key
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.audio.speech.create(model="team-tts", voice="heart", input="Hi.")
    assert raised.value.body["param"] == "voice"
    assert raised.value.body["message"].endswith("Supported voices: alloy, nova.")
    assert upstream.received == []
    _nothing_left_held(organization)


def test_the_upstreams_400_is_passed_back_and_not_billed(sdk, upstream, live_key):
    organization, _ = live_key
    upstream.error = Error(400, "The input contains forbidden words.", param="input",
                           code="invalid_value")  # fmt: skip
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.audio.speech.create(model="team-tts", voice="alloy", input="Hi.")
    assert raised.value.body["message"] == "The input contains forbidden words."
    assert raised.value.body["param"] == "input"
    record = UsageRecord.objects.get()
    assert (record.status, record.cost_micros) == (400, 0)
    _nothing_left_held(organization)


def test_a_transcript_passes_through_billed_by_the_decoded_seconds(sdk, upstream, live_key):
    organization, _ = live_key
    upstream.transcript = "Meet me at the station at noon."
    audio = _tone_wav(2.2)
    transcript = sdk.audio.transcriptions.create(
        model="team-whisper", file=("meeting.wav", audio, "audio/wav"), language="en",
        prompt="Train times.",
    )  # fmt: skip
    assert transcript.text == upstream.transcript
    # Plugsky's own count of what it charged (3 s at the route's price), not the upstream's.
    assert transcript.usage.seconds == 3  # type: ignore[union-attr]
    sent = upstream.received[-1]
    assert sent.path == "/v1/audio/transcriptions"
    assert sent.file == ("meeting.wav", "audio/wav", audio)  # the upload unchanged, named
    assert {name: values[-1] for name, values in sent.form.items()} == {
        "model": "whisper-1", "response_format": "json", "temperature": "0.0",
        "language": "en", "prompt": "Train times.",
    }  # fmt: skip
    _billed(transcript._request_id, units=3, cost_micros=3 * WHISPER_ROUTE_PRICE)  # type: ignore[attr-defined]
    _nothing_left_held(organization)


def test_verbose_json_text_and_subtitles_pass_through(sdk, upstream):
    upstream.transcript = "One two three."
    file = ("a.wav", _tone_wav(1.0), "audio/wav")
    verbose = sdk.audio.transcriptions.create(
        model="team-whisper", file=file, response_format="verbose_json",
        timestamp_granularities=["word"],
    )  # fmt: skip
    assert (verbose.language, verbose.duration, verbose.text) == ("english", 2.5, "One two three.")
    assert [word.word for word in verbose.words] == ["One", "two", "three."]
    assert upstream.received[-1].form["timestamp_granularities[]"] == ["word"]
    text = sdk.audio.transcriptions.create(model="team-whisper", file=file, response_format="text")
    assert text == "One two three.\n"
    vtt = sdk.audio.transcriptions.create(model="team-whisper", file=file, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nOne two three.")


def test_a_translation_goes_to_the_upstreams_translations(sdk, upstream):
    upstream.transcript = "Good morning."
    translation = sdk.audio.translations.create(
        model="team-whisper", file=("fr.wav", _tone_wav(1.0), "audio/wav")
    )
    assert translation.text == "Good morning."
    assert upstream.received[-1].path == "/v1/audio/translations"
    assert "language" not in upstream.received[-1].form


def test_a_streamed_transcript_passes_the_upstreams_events(sdk, upstream, live_key):
    organization, _ = live_key
    upstream.transcript = "Streaming works well."
    stream = sdk.audio.transcriptions.create(
        model="team-whisper", file=("a.wav", _tone_wav(1.5), "audio/wav"), stream=True
    )
    *deltas, done = list(stream)
    assert [event.delta for event in deltas] == ["Streaming", " works", " well."]
    assert (done.type, done.text) == ("transcript.text.done", "Streaming works well.")
    assert upstream.received[-1].form["stream"] == ["true"]
    _billed(stream.response.headers["x-request-id"], units=2, cost_micros=2 * WHISPER_ROUTE_PRICE)
    _nothing_left_held(organization)


def test_a_refused_route_falls_back_and_the_answering_routes_price_is_charged(
    sdk, upstream, live_key
):
    organization, _ = live_key
    upstream.transcript = "Second route."
    transcript = sdk.audio.transcriptions.create(
        model="team-whisper-fallback", file=("a.wav", _tone_wav(1.0), "audio/wav")
    )
    assert transcript.text == "Second route."
    request_id = transcript._request_id  # type: ignore[attr-defined]
    _billed(request_id, units=1, cost_micros=WHISPER_PRICE, route_index=1)
    # The hold covered the dearest route, then released the difference.
    assert CreditHold.objects.get(request_id=request_id).amount_micros == FALLBACK_FIRST_PRICE
    _nothing_left_held(organization)


def test_an_upstream_that_fails_costs_nothing(sdk, upstream, live_key):
    organization, _ = live_key
    upstream.error = Error(500, "The server had an error.", type="server_error")
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.audio.transcriptions.create(
            model="team-whisper", file=("a.wav", _tone_wav(1.0), "audio/wav")
        )
    assert raised.value.status_code == 502
    assert raised.value.body["code"] == "upstream_unavailable"
    record = UsageRecord.objects.get()
    assert (record.status, record.cost_micros) == (502, 0)
    _nothing_left_held(organization)


def test_undecodable_audio_never_reaches_the_upstream(sdk, upstream):
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.audio.transcriptions.create(
            model="team-whisper", file=("a.wav", b"not audio" * 100, "audio/wav")
        )
    assert raised.value.body["param"] == "file"
    assert upstream.received == []
    assert not UsageRecord.objects.exists() and not CreditHold.objects.exists()


def test_the_upstream_audio_models_are_listed(sdk):
    listed = {model.id: model for model in sdk.models.list()}
    assert listed["team-whisper"].kind == "transcription"  # type: ignore[attr-defined]
    assert listed["team-tts"].voices == ["alloy", "nova"]  # type: ignore[attr-defined]
