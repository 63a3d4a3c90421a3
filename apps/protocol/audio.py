"""OpenAI's audio requests: multipart transcriptions/translations, JSON speech.

`parse_body` (apps.protocol.openai) refuses multipart bodies, which JSON endpoints never take;
transcriptions take nothing else, so their form is read here: Django parses it, and the fields
are validated by the same pydantic machinery, errors naming the field as for JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.protocol import errors
from apps.protocol.audio_languages import LANGUAGE_NAMES
from apps.protocol.openai import request_validate

MAX_FILE_BYTES = 25 * 1024 * 1024  # OpenAI's limit on an uploaded audio file
MAX_SPEECH_INPUT_CHARACTERS = 4096

TranscriptionFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["word", "segment"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class _Form(Protocol):
    """What Django's QueryDict offers the parser."""

    def getlist(self, key: str) -> list[Any]: ...

    def __iter__(self) -> Iterator[str]: ...


class _UploadedFile(Protocol):
    @property
    def size(self) -> int | None: ...

    @property
    def name(self) -> str | None: ...

    @property
    def content_type(self) -> str | None: ...

    def read(self, num_bytes: int | None = None) -> bytes: ...


@dataclass(frozen=True)
class AudioUpload:
    """The uploaded file: its bytes, and the name and type an upstream reads its format from."""

    data: bytes
    filename: str = "audio"
    content_type: str = "application/octet-stream"


class TranscriptionRequest(BaseModel):
    """POST /v1/audio/transcriptions and /v1/audio/translations (without the file)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    language: str | None = None
    prompt: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    response_format: TranscriptionFormat = "json"
    timestamp_granularities: list[Granularity] = Field(
        default_factory=lambda: list[Granularity](["segment"]), alias="timestamp_granularities[]"
    )
    stream: bool = False

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str | None) -> str | None:
        # Checked here, not by Whisper in the engine: a wrong code is the client's 400 before
        # anything is decoded or held.
        if language and language not in LANGUAGE_NAMES:
            raise ValueError(
                f"`{language}` is not the ISO-639-1 code of a language the models know"
            )
        return language or None


class SpeechRequest(BaseModel):
    """POST /v1/audio/speech."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT_CHARACTERS)
    voice: str
    response_format: SpeechFormat = "mp3"  # OpenAI's default
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None  # accepted; the built-in voice has no style control
    stream_format: Literal["audio", "sse"] = "audio"


def parse_transcription(
    form: _Form, files: Mapping[str, Any]
) -> tuple[TranscriptionRequest, AudioUpload]:
    """The request's fields and its file's bytes, or an APIError (413 over MAX_FILE_BYTES)."""
    upload: _UploadedFile | None = files.get("file")
    if upload is None:
        raise errors.invalid_value("Missing required parameter: 'file'.", param="file")
    if (upload.size or 0) > MAX_FILE_BYTES:
        raise errors.APIError(
            f"Maximum content size limit ({MAX_FILE_BYTES} bytes) exceeded "
            f"({upload.size} bytes read).",
            status=413,
            code="request_too_large",
            param="file",
        )
    document: dict[str, Any] = {}
    for name in form:
        values = form.getlist(name)
        # Only the granularities repeat; every other field takes its last value, as OpenAI's.
        document[name] = values if name == "timestamp_granularities[]" else values[-1]
    request = request_validate(document, TranscriptionRequest)
    return request, AudioUpload(
        upload.read(),
        filename=upload.name or "audio",
        content_type=upload.content_type or "application/octet-stream",
    )
