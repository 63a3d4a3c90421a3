"""A loopback fake of OpenAI's audio API, written from OpenAI's API reference, to run with
`tests.fakes.server.serve`:

    fake = FakeOpenAIAudio(api_key="sk-test")
    fake.speech = b"ID3..."                      # the encoded audio every speech call answers
    fake.transcript = "Hello there."             # what every transcription hears
    with serve(fake) as base_url:
        ...                                       # routes with base_url + "/v1"
    fake.received[-1]                             # what the code under test sent

- `POST /v1/audio/speech` (JSON: `model`, `input` up to 4096 characters, one of OpenAI's
  voices, `response_format`, `speed` 0.25-4): the audio in the format's content type, sent in
  several pieces as OpenAI streams it.
- `POST /v1/audio/transcriptions` and `/translations` (multipart: `file`, `model`, `language`,
  `prompt`, `response_format`, `temperature`, `timestamp_granularities[]`, `stream`): `json`
  (`text` and a duration `usage`), `text`, `srt`, `vtt`, `verbose_json` (task, language,
  duration, segments, words when asked); `stream=true` gives `transcript.text.delta` events
  and a `transcript.text.done` with token usage, as gpt-4o-transcribe streams (whisper-1 does
  not stream).
- OpenAI's error bodies for a bad key, a missing field, an unknown voice or format; `error`
  makes every call answer that error instead (a 500, a 429 with Retry-After …).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tests.fakes.openai_api import REQUEST_ID, Error

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
          "verse")  # fmt: skip
SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}  # fmt: skip
TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
DURATION_S = 2.5  # what the fake says every file lasts


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    json: Any = None  # a speech body
    form: dict[str, list[str]] = field(default_factory=dict)  # a transcription's fields
    file: tuple[str, str, bytes] | None = None  # (filename, content type, bytes)


class FakeOpenAIAudio:
    """The ASGI app."""

    def __init__(self, *, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.speech = b"\xff\xf3" + b"\x00" * 4000  # set a real file for a playable answer
        self.transcript = "Hello from the upstream."
        self.error: Error | None = None
        self.received: list[Received] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = await _read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        received = Received(path=scope["path"], headers=headers)
        self.received.append(received)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            await _send_error(send, Error(401, "Incorrect API key provided.",
                                          code="invalid_api_key"))  # fmt: skip
        elif self.error is not None:
            await _send_error(send, self.error)
        elif scope["path"] == "/v1/audio/speech":
            received.json = _json_or_none(raw)
            await self._speech(send, received.json)
        elif scope["path"] in ("/v1/audio/transcriptions", "/v1/audio/translations"):
            received.form, received.file = _form(headers.get("content-type", ""), raw)
            translate = scope["path"].endswith("translations")
            await self._transcription(send, received, translate=translate)
        else:
            await _send_error(send, Error(404, f"Invalid URL (POST {scope['path']})"))

    async def _speech(self, send: Any, body: Any) -> None:
        refusal = _speech_refusal(body)
        if refusal is not None:
            await _send_error(send, refusal)
            return
        content_type = SPEECH_TYPES[body.get("response_format", "mp3")]
        await _start(send, 200, content_type)
        for start in range(0, len(self.speech), 1024):  # streamed as it is synthesized
            await send({"type": "http.response.body", "body": self.speech[start : start + 1024],
                        "more_body": True})  # fmt: skip
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    async def _transcription(self, send: Any, received: Received, *, translate: bool) -> None:
        form = {name: values[-1] for name, values in received.form.items()}
        refusal = _transcription_refusal(form, received.file)
        if refusal is not None:
            await _send_error(send, refusal)
            return
        if form.get("stream") == "true":
            await self._events(send)
            return
        response_format = form.get("response_format", "json")
        words = "word" in received.form.get("timestamp_granularities[]", [])
        task = "translate" if translate else "transcribe"
        body, content_type = _transcript(self.transcript, response_format, words=words, task=task,
                                         language=form.get("language", "en"))  # fmt: skip
        await _start(send, 200, content_type)
        await send({"type": "http.response.body", "body": body})

    async def _events(self, send: Any) -> None:
        await _start(send, 200, "text/event-stream; charset=utf-8")
        words = self.transcript.split(" ")
        for index, word in enumerate(words):
            delta = word if index == 0 else f" {word}"
            await _event(send, {"type": "transcript.text.delta", "delta": delta, "logprobs": None})
        usage = {"type": "tokens", "input_tokens": 31, "output_tokens": len(words),
                 "total_tokens": 31 + len(words),
                 "input_token_details": {"text_tokens": 0, "audio_tokens": 31}}  # fmt: skip
        done = {"type": "transcript.text.done", "text": self.transcript, "logprobs": None,
                "usage": usage}  # fmt: skip
        await _event(send, done)
        await send({"type": "http.response.body", "body": b""})


def _speech_refusal(body: Any) -> Error | None:
    if not isinstance(body, dict):
        return Error(400, "We could not parse the JSON body of your request.")
    for name in ("model", "input", "voice"):
        if not body.get(name):
            return Error(400, f"Missing required parameter: '{name}'.", param=name,
                         code="missing_required_parameter")  # fmt: skip
    if len(body["input"]) > 4096:
        return Error(400, "Input is too long.", param="input", code="string_above_max_length")
    if body["voice"] not in VOICES:
        return Error(400, f"Invalid value: '{body['voice']}'. Supported values are: "
                     f"{', '.join(map(repr, VOICES))}.", param="voice",
                     code="invalid_value")  # fmt: skip
    if body.get("response_format", "mp3") not in SPEECH_TYPES:
        return Error(400, "Invalid response_format.", param="response_format",
                     code="invalid_value")  # fmt: skip
    if not 0.25 <= float(body.get("speed", 1.0)) <= 4.0:
        return Error(400, "Invalid speed.", param="speed", code="invalid_value")
    return None


def _transcription_refusal(form: dict[str, str], file: Any) -> Error | None:
    if file is None:
        return Error(400, "Missing required parameter: 'file'.", param="file",
                     code="missing_required_parameter")  # fmt: skip
    if not form.get("model"):
        return Error(400, "Missing required parameter: 'model'.", param="model",
                     code="missing_required_parameter")  # fmt: skip
    if form.get("response_format", "json") not in TRANSCRIPT_FORMATS:
        return Error(400, "Invalid response_format.", param="response_format",
                     code="invalid_value")  # fmt: skip
    return None


def _transcript(
    text: str, response_format: str, *, words: bool, task: str, language: str
) -> tuple[bytes, str]:
    if response_format == "text":
        return f"{text}\n".encode(), "text/plain; charset=utf-8"
    if response_format == "srt":
        return f"1\n00:00:00,000 --> 00:00:02,500\n{text}\n\n".encode(), "text/plain"
    if response_format == "vtt":
        return f"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{text}\n\n".encode(), "text/vtt"
    usage = {"type": "duration", "seconds": 3}
    if response_format == "json":
        return json.dumps({"text": text, "usage": usage}).encode(), "application/json"
    segment = {"id": 0, "seek": 0, "start": 0.0, "end": DURATION_S, "text": f" {text}",
               "tokens": [50364, 2425], "temperature": 0.0, "avg_logprob": -0.2,
               "compression_ratio": 0.9, "no_speech_prob": 0.01}  # fmt: skip
    names = {"en": "english", "ja": "japanese", "fr": "french"}
    body: dict[str, Any] = {"task": task, "language": names.get(language, language),
                            "duration": DURATION_S, "text": text, "segments": [segment],
                            "usage": usage}  # fmt: skip
    if words:
        spoken = text.split(" ")
        step = DURATION_S / len(spoken)
        body["words"] = [
            {"word": word, "start": round(i * step, 2), "end": round((i + 1) * step, 2)}
            for i, word in enumerate(spoken)
        ]
    return json.dumps(body).encode(), "application/json"


def _form(content_type: str, raw: bytes) -> tuple[dict[str, list[str]], Any]:
    """A multipart/form-data body's fields and its `file` part."""
    if not content_type.startswith("multipart/form-data"):
        return {}, None
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, list[str]] = {}
    file = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            filename = part.get_param("filename", header="content-disposition")
            file = (filename, part.get_content_type(), payload)
        else:
            fields.setdefault(str(name), []).append(payload.decode())
    return fields, file


async def _start(send: Any, status: int, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"x-request-id", REQUEST_ID.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _event(send: Any, event: dict[str, Any]) -> None:
    data = f"data: {json.dumps(event)}\n\n".encode()
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _send_error(send: Any, error: Error) -> None:
    document = {"error": {"message": error.message, "type": error.type, "param": error.param,
                          "code": error.code}}  # fmt: skip
    head = [(b"content-type", b"application/json")]
    head += [(name.encode(), value.encode()) for name, value in error.headers]
    await send({"type": "http.response.start", "status": error.status, "headers": head})
    await send({"type": "http.response.body", "body": json.dumps(document).encode()})


async def _read_body(receive: Any) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
