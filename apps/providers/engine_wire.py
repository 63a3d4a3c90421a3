"""What crosses between the engine process and its clients: one place for both sides.

Requests are JSON. Generations answer with NDJSON, one object per line:

    {"chunk": {...}}     an engine chunk, exactly as LocalProvider yields it (with `timings`)
    {"error": {...}}     the stream failed after its first chunk; nothing follows
    {"done": true}       the stream ended normally; a stream cut off without it is broken

An error before the first chunk is not streamed: the engine answers with the error's own HTTP
status and the body ``{"error": {...}}``, so a client can answer with that status too. Every
error object carries ProviderError's fields: ``message``, ``status``, ``code``, ``param``.

Embedding vectors travel as base64 of little-endian float32, with their shape.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from apps.providers.errors import ProviderError
from apps.providers.vision.reading import ImageReading

CHAT_PATH = "/chat"
COMPLETIONS_PATH = "/completions"
EMBEDDINGS_PATH = "/embeddings"
READ_IMAGE_PATH = "/read-image"
COUNT_TOKENS_PATH = "/count-tokens"  # {model, messages} → {"prompt_tokens": n}
HEALTH_PATH = "/healthz"
NDJSON = "application/x-ndjson"
DONE_LINE = b'{"done":true}\n'


@dataclass(frozen=True)
class EngineAddress:
    """Where an engine listens: TCP (`http://host:port`) or a unix socket (`unix:/path`)."""

    base_url: str  # what a client puts in front of the paths above
    host: str = ""
    port: int = 0
    socket_path: str = ""


def engine_address(url: str) -> EngineAddress:
    """`http://127.0.0.1:8001`, `unix:/srv/engine.sock` or `unix:///srv/engine.sock`."""
    if url.startswith("unix:"):
        path = url.removeprefix("unix:")
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise ValueError(f"engine URL {url!r} names no socket path")
        return EngineAddress(base_url="http://engine", socket_path=path)
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"engine URL {url!r} must be http://host:port or unix:/path")
    return EngineAddress(base_url=url.rstrip("/"), host=parts.hostname, port=parts.port or 80)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def line(value: Any) -> bytes:
    return dumps(value) + b"\n"


def error_body(error: ProviderError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "status": error.status,
            "code": error.code,
            "param": error.param,
        }
    }


def error_from(body: Any, *, status: int) -> ProviderError:
    """The ProviderError an engine error object describes (`status` if it names none)."""
    fields = body.get("error") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        return ProviderError(
            f"The engine answered {status} without an error object.",
            status=502,
            code="engine_error",
        )
    return ProviderError(
        str(fields.get("message") or "The engine failed."),
        status=int(fields.get("status") or status),
        code=fields.get("code"),
        param=fields.get("param"),
    )


def vectors_body(vectors: np.ndarray, prompt_tokens: int) -> dict[str, Any]:
    data = np.ascontiguousarray(vectors, dtype="<f4")
    return {
        "vectors": base64.b64encode(data.tobytes()).decode(),
        "shape": list(data.shape),
        "prompt_tokens": prompt_tokens,
    }


def vectors_from(body: dict[str, Any]) -> tuple[np.ndarray, int]:
    raw = base64.b64decode(body["vectors"])
    vectors = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(body["shape"])
    return vectors, int(body["prompt_tokens"])


def reading_body(reading: ImageReading) -> dict[str, Any]:
    return {
        "format": reading.format,
        "width": reading.width,
        "height": reading.height,
        "colours": [list(colour) for colour in reading.colours],
        "text_lines": list(reading.text_lines),
    }


def reading_from(body: dict[str, Any]) -> ImageReading:
    return ImageReading(
        format=str(body["format"]),
        width=int(body["width"]),
        height=int(body["height"]),
        colours=tuple((str(name), int(share)) for name, share in body["colours"]),
        text_lines=tuple(str(text) for text in body["text_lines"]),
    )
