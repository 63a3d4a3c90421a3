"""The official openai SDK against a live server: speech out, the same words back in, billed
exactly (usage record, ledger, hold), and the errors OpenAI answers."""

import io
import re
import time
import wave

import httpx
import openai
import pytest

from apps.billing.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from apps.providers.audio.decode import decode_audio
from apps.usage.models import UsageRecord

SENTENCES = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
SHORT = "Good morning. Please close the door."


def _words(text):
    return re.findall(r"[a-z']+", text.lower())


def _word_error_rate(reference, hypothesis):
    """Word-level edit distance over the reference's length."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != other))
    return row[-1] / len(ref)


def test_the_word_error_rate_counts_edits():
    assert _word_error_rate("a b c d", "a x c") == 0.5
    assert _word_error_rate("Hello, world.", "hello world") == 0.0


def _wav_seconds(audio):
    with wave.open(io.BytesIO(audio)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (
            1,
            2,
            24000,
        )
    return (len(audio) - 44) / 2 / 24000  # the streamed header's sizes are unknown (0xFFFFFFFF)


def _assert_billed(organization, request_id, *, units, cost_micros, before):
    record = UsageRecord.objects.get(request_id=request_id)
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (200, units, 0)
    assert record.cost_micros == cost_micros
    debit = LedgerEntry.objects.get(usage_record=record)
    assert (debit.kind, debit.amount_micros) == (EntryKind.USAGE, -cost_micros)
    hold = CreditHold.objects.get(request_id=request_id)
    assert (hold.status, hold.amount_micros) == (HoldStatus.SETTLED, cost_micros)  # exact
    account = CreditAccount.objects.get(organization=organization)
    assert (account.held_micros, before - account.balance_micros) == (0, cost_micros)


def _balance(organization):
    return CreditAccount.objects.get(organization=organization).balance_micros


def test_speech_round_trips_through_whisper_and_is_billed_exactly(client, live_key):
    organization, _ = live_key
    before = _balance(organization)
    speech = client.audio.speech.create(
        model="plugsky-tts", voice="heart", input=SENTENCES, response_format="wav"
    )
    seconds = _wav_seconds(speech.content)
    assert 3.0 < seconds < 9.0  # 15 words at a speaking pace
    assert speech.response.headers["content-type"] == "audio/wav"
    assert speech.response.headers["x-plugsky-cost"] == "0.000380"  # 76 characters at 5 µ$
    _assert_billed(organization, speech.response.headers["x-request-id"], units=len(SENTENCES),
                   cost_micros=380, before=before)  # fmt: skip

    before = _balance(organization)
    transcript = client.audio.transcriptions.create(
        model="plugsky-whisper-tiny-en",
        file=("speech.wav", speech.content, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert _word_error_rate(SENTENCES, transcript.text) <= 0.10
    assert (transcript.task, transcript.language) == ("transcribe", "english")
    assert abs(transcript.duration - seconds) < 0.01
    starts = [word.start for word in transcript.words]
    assert starts == sorted(starts) and len(starts) >= 14
    assert all(0 <= w.start <= w.end <= seconds + 0.05 for w in transcript.words)
    segment_starts = [segment.start for segment in transcript.segments]
    assert segment_starts == sorted(segment_starts)
    assert all(0 <= s.start < s.end <= seconds + 0.05 for s in transcript.segments)
    billed = -(-round(seconds * 16000) // 16000)
    assert transcript.usage.seconds == billed
    _assert_billed(organization, transcript._request_id, units=billed, cost_micros=billed * 30,
                   before=before)  # fmt: skip


def test_streamed_mp3_speech_is_a_playable_file_and_translates_to_the_same_words(client):
    with client.audio.speech.with_streaming_response.create(
        model="plugsky-tts", voice="heart", input=SHORT
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        pieces = list(response.iter_bytes())
    audio = b"".join(pieces)
    seconds = decode_audio(audio).size / 16000
    assert 1.2 < seconds < 5.0
    translation = client.audio.translations.create(
        model="plugsky-whisper-base", file=("speech.mp3", audio, "audio/mpeg")
    )
    assert _word_error_rate(SHORT, translation.text) <= 0.10


def test_transcripts_come_as_text_srt_and_vtt(client):
    speech = client.audio.speech.create(
        model="plugsky-tts", voice="heart", input=SHORT, response_format="flac"
    )
    file = ("speech.flac", speech.content, "audio/flac")
    text = client.audio.transcriptions.create(
        model="plugsky-whisper-tiny-en", file=file, response_format="text"
    )
    assert _word_error_rate(SHORT, text) <= 0.10 and text.endswith("\n")
    srt = client.audio.transcriptions.create(
        model="plugsky-whisper-tiny-en", file=file, response_format="srt"
    )
    assert re.match(r"1\n00:00:0\d,\d{3} --> 00:00:0\d,\d{3}\n\S", srt)
    vtt = client.audio.transcriptions.create(
        model="plugsky-whisper-tiny-en", file=file, response_format="vtt"
    )
    assert re.match(r"WEBVTT\n\n00:00:0\d\.\d{3} --> 00:00:0\d\.\d{3}\n\S", vtt)


def test_the_audio_models_are_listed_with_their_kind(client):
    listed = {model.id: model for model in client.models.list()}
    assert listed["plugsky-whisper-base"].kind == "transcription"  # type: ignore[attr-defined]
    assert listed["plugsky-whisper-tiny-en"].kind == "transcription"  # type: ignore[attr-defined]
    assert listed["plugsky-tts"].kind == "speech"  # type: ignore[attr-defined]
    assert listed["plugsky-tts"].voices == ["heart"]  # type: ignore[attr-defined]


def _refused(call, status=400):
    with pytest.raises(openai.APIStatusError) as raised:
        call()
    assert raised.value.status_code == status
    error = raised.value.body
    assert error["type"] == "invalid_request_error"
    return error


def test_an_unknown_voice_gets_a_400_listing_the_voices(client):
    error = _refused(
        lambda: client.audio.speech.create(model="plugsky-tts", voice="alloy", input="Hi.")
    )
    assert (error["param"], error["code"]) == ("voice", "invalid_value")
    assert error["message"].endswith("Supported voices: heart.")


def test_an_unsupported_speech_format_names_response_format(client):
    error = _refused(
        lambda: client.audio.speech.create(
            model="plugsky-tts", voice="heart", input="Hi.", response_format="ogg"
        )
    )
    assert error["param"] == "response_format"


def test_a_chat_model_on_an_audio_endpoint_gets_openais_400(client):
    error = _refused(
        lambda: client.audio.transcriptions.create(
            model="plugsky-nano", file=("a.wav", b"RIFF", "audio/wav")
        )
    )
    assert (error["param"], error["code"]) == ("model", "model_not_supported")
    assert error["message"] == (
        "The model `plugsky-nano` is a chat model and is not supported on v1/audio/transcriptions."
    )
    error = _refused(
        lambda: client.audio.speech.create(model="plugsky-nano", voice="heart", input="Hi.")
    )
    assert (error["param"], error["code"]) == ("model", "model_not_supported")


def test_an_english_only_model_does_not_translate(client):
    error = _refused(
        lambda: client.audio.translations.create(
            model="plugsky-whisper-tiny-en", file=("a.wav", b"RIFF", "audio/wav")
        )
    )
    assert (error["param"], error["code"]) == ("model", "model_not_supported")


def test_an_unknown_model_is_a_404(client):
    error = _refused(
        lambda: client.audio.transcriptions.create(
            model="whisper-9", file=("a.wav", b"RIFF", "audio/wav")
        ),
        status=404,
    )
    assert (error["param"], error["code"]) == ("model", "model_not_found")


def test_undecodable_audio_gets_a_400_and_leaves_no_hold(client):
    error = _refused(
        lambda: client.audio.transcriptions.create(
            model="plugsky-whisper-tiny-en", file=("a.wav", b"not audio" * 100, "audio/wav")
        )
    )
    assert (error["param"], error["code"]) == ("file", "invalid_value")
    assert not CreditHold.objects.exists()
    assert not UsageRecord.objects.exists()


def test_a_file_over_25_mb_gets_a_413_and_leaves_no_hold(client):
    error = _refused(
        lambda: client.audio.transcriptions.create(
            model="plugsky-whisper-tiny-en", file=("a.wav", b"\0" * (26 << 20), "audio/wav")
        ),
        status=413,
    )
    assert error["code"] == "request_too_large"
    assert not CreditHold.objects.exists()


def test_a_json_body_on_the_transcription_endpoint_is_refused(live_server_url, live_key):
    _, raw_key = live_key
    response = httpx.post(
        f"{live_server_url}/v1/audio/transcriptions",
        json={"model": "plugsky-whisper-tiny-en"},
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_content_type"


def test_a_client_that_leaves_mid_speech_is_billed_its_input_and_leaves_no_hold(
    live_server_url, live_key
):
    organization, raw_key = live_key
    text = " ".join(f"This is sentence number {n} of a long text." for n in range(40))
    with httpx.stream(
        "POST",
        f"{live_server_url}/v1/audio/speech",
        json={"model": "plugsky-tts", "voice": "heart", "input": text, "response_format": "pcm"},
        headers={"Authorization": f"Bearer {raw_key}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        first = next(response.iter_raw())
    assert 0 < len(first) < 40 * 24000 * 2  # far from the whole text's audio
    record = _settled(request_id)
    assert (record.status, record.error_code, record.is_client_disconnect) == (
        499,
        "client_disconnected",
        True,
    )
    assert (record.prompt_tokens, record.cost_micros) == (len(text), len(text) * 5)
    assert CreditAccount.objects.get(organization=organization).held_micros == 0


def _settled(request_id):
    """The call's usage record, once the server has settled it (just after the client left)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = UsageRecord.objects.filter(request_id=request_id).first()
        if record is not None:
            return record
        time.sleep(0.1)
    raise AssertionError(f"{request_id} was never settled")


def test_a_streamed_transcript_comes_as_openais_events_and_is_billed(client, live_key):
    organization, _ = live_key
    speech = client.audio.speech.create(
        model="plugsky-tts", voice="heart", input=SENTENCES, response_format="opus"
    )
    before = _balance(organization)
    stream = client.audio.transcriptions.create(
        model="plugsky-whisper-tiny-en",
        file=("speech.ogg", speech.content, "audio/ogg"),
        stream=True,
    )
    events = list(stream)
    *deltas, done = events
    assert deltas and {event.type for event in deltas} == {"transcript.text.delta"}
    assert done.type == "transcript.text.done"
    assert done.text == "".join(event.delta for event in deltas).rstrip()
    assert _word_error_rate(SENTENCES, done.text) <= 0.10
    seconds = decode_audio(speech.content).size / 16000
    billed = -(-round(seconds * 16000) // 16000)
    _assert_billed(organization, stream.response.headers["x-request-id"], units=billed,
                   cost_micros=billed * 30, before=before)  # fmt: skip


def test_subtitles_cannot_be_streamed(client):
    error = _refused(
        lambda: client.audio.transcriptions.create(
            model="plugsky-whisper-tiny-en",
            file=("a.wav", b"RIFF", "audio/wav"),
            response_format="srt",
            stream=True,
        )
    )
    assert error["param"] == "response_format"


def test_a_malformed_multipart_body_is_a_400(live_server_url, live_key):
    _, raw_key = live_key
    response = httpx.post(
        f"{live_server_url}/v1/audio/transcriptions",
        content=b"--x\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--x--\r\n",
        headers={
            "Authorization": f"Bearer {raw_key}",
            "Content-Type": "multipart/form-data; boundary=x",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
