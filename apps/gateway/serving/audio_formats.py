"""A transcript in OpenAI's response formats: json, text, srt, vtt and verbose_json."""

from __future__ import annotations

from typing import Any

from apps.gateway.serving.audio import cost_dollars, usage_seconds
from apps.gateway.serving.transcription import Transcript
from apps.protocol.audio_languages import language_name


def transcript_body(
    transcript: Transcript, *, response_format: str, words: bool
) -> tuple[str | dict[str, Any], str]:
    """(body, content type): a dict for the JSON formats, text for the others."""
    result = transcript.result
    if response_format == "text":
        return result["text"] + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return _srt(result["segments"]), "text/plain; charset=utf-8"
    if response_format == "vtt":
        return _vtt(result["segments"]), "text/vtt; charset=utf-8"
    usage = {**usage_seconds(transcript.seconds), "cost": cost_dollars(transcript.cost_micros)}
    if response_format == "json":
        return {"text": result["text"], "usage": usage}, "application/json"
    body: dict[str, Any] = {
        "task": result["task"],
        "language": language_name(result["language"]),  # OpenAI names it: "english"
        "duration": result["duration"],
        "text": result["text"],
        "segments": result["segments"],
        "usage": usage,
    }
    if words:
        body["words"] = result["words"]
    return body, "application/json"


def _timestamp(seconds: float, *, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{millis:03d}"


def _srt(segments: list[dict[str, Any]]) -> str:
    blocks = [
        f"{index}\n{_timestamp(s['start'], separator=',')} --> "
        f"{_timestamp(s['end'], separator=',')}\n{s['text'].strip()}\n"
        for index, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def _vtt(segments: list[dict[str, Any]]) -> str:
    cues = [
        f"{_timestamp(s['start'], separator='.')} --> {_timestamp(s['end'], separator='.')}\n"
        f"{s['text'].strip()}\n"
        for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)
