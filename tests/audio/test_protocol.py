"""Parsing the multipart transcription form and the speech body."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import QueryDict

from apps.protocol.audio import MAX_FILE_BYTES, SpeechRequest, parse_transcription
from apps.protocol.errors import APIError
from apps.protocol.openai import request_validate


def _form(text):
    return QueryDict(text)


def _file(data=b"RIFF"):
    return {"file": SimpleUploadedFile("a.wav", data, content_type="audio/wav")}


def test_the_form_fields_and_the_file_are_read():
    form = _form(
        "model=whisper-1&language=en&temperature=0.2&response_format=verbose_json"
        "&timestamp_granularities[]=word&timestamp_granularities[]=segment&prompt=Hi"
    )
    request, upload = parse_transcription(form, _file(b"abc"))
    assert (upload.data, upload.filename, upload.content_type) == (b"abc", "a.wav", "audio/wav")
    assert (request.model, request.language, request.prompt) == ("whisper-1", "en", "Hi")
    assert request.temperature == 0.2
    assert request.response_format == "verbose_json"
    assert request.timestamp_granularities == ["word", "segment"]
    assert request.stream is False


def test_defaults_follow_openai():
    request, _ = parse_transcription(_form("model=m"), _file())
    assert (request.response_format, request.timestamp_granularities) == ("json", ["segment"])
    assert (request.language, request.prompt, request.temperature) == (None, None, 0.0)


def test_a_missing_file_names_file():
    with pytest.raises(APIError) as raised:
        parse_transcription(_form("model=m"), {})
    assert (raised.value.status, raised.value.param) == (400, "file")


def test_an_unknown_response_format_names_it():
    with pytest.raises(APIError) as raised:
        parse_transcription(_form("model=m&response_format=docx"), _file())
    assert (raised.value.status, raised.value.param) == (400, "response_format")


def test_a_file_over_25_mb_is_a_413():
    upload = _file()
    upload["file"].size = MAX_FILE_BYTES + 1
    with pytest.raises(APIError) as raised:
        parse_transcription(_form("model=m"), upload)
    assert (raised.value.status, raised.value.code, raised.value.param) == (
        413,
        "request_too_large",
        "file",
    )


def test_a_file_of_exactly_25_mb_is_accepted():
    upload = _file()
    upload["file"].size = MAX_FILE_BYTES
    request, _ = parse_transcription(_form("model=m"), upload)
    assert request.model == "m"


def test_an_unknown_language_code_names_language():
    with pytest.raises(APIError) as raised:
        parse_transcription(_form("model=m&language=english"), _file())
    assert (raised.value.status, raised.value.param) == (400, "language")
    assert raised.value.message == (
        "Invalid 'language': `english` is not the ISO-639-1 code of a language the models know."
    )


def test_an_empty_language_is_detected():
    request, _ = parse_transcription(_form("model=m&language="), _file())
    assert request.language is None


def test_a_missing_model_names_model():
    with pytest.raises(APIError) as raised:
        parse_transcription(_form("language=en"), _file())
    assert (raised.value.status, raised.value.param) == (400, "model")


def test_speech_defaults_to_mp3_at_normal_speed():
    request = request_validate({"model": "m", "input": "Hi", "voice": "v"}, SpeechRequest)
    assert (request.response_format, request.speed, request.stream_format) == ("mp3", 1.0, "audio")


@pytest.mark.parametrize(
    ("field", "value"),
    [("input", "x" * 4097), ("input", ""), ("speed", 4.5), ("speed", 0.2),
     ("response_format", "ogg")],
)  # fmt: skip
def test_speech_fields_out_of_range_are_named(field, value):
    document = {"model": "m", "input": "Hi", "voice": "v", field: value}
    with pytest.raises(APIError) as raised:
        request_validate(document, SpeechRequest)
    assert (raised.value.status, raised.value.param) == (400, field)


def test_4096_characters_of_input_are_accepted():
    request = request_validate({"model": "m", "input": "x" * 4096, "voice": "v"}, SpeechRequest)
    assert len(request.input) == 4096
