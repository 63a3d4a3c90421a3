"""Server-sent events as OpenAI streams them: `data: <json>\\n\\n` … `data: [DONE]\\n\\n`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse

from apps.gateway.serving.common import ChunkStream

DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def streaming_response(chunks: ChunkStream) -> StreamingHttpResponse:
    """A 200 SSE response of a serving stream's chunks, ended with `[DONE]`."""
    response = StreamingHttpResponse(_events(chunks), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must flush every chunk
    return response


async def _events(chunks: ChunkStream) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield event(chunk)
        yield DONE
    finally:
        # Closed early (a client gone, see apps.gateway.admission): close the serving stream now,
        # so that it settles the call at once, for what was generated.
        await chunks.aclose()
