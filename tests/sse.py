"""Read an SSE body strictly, as the OpenAI SDKs do."""

from __future__ import annotations

import json
from typing import Any


def parse_events(raw: str) -> tuple[list[dict[str, Any]], bool]:
    """(JSON events, whether the stream ended with [DONE]); fails on malformed framing."""
    assert raw.endswith("\n\n"), f"stream does not end with a blank line: {raw[-40:]!r}"
    events: list[dict[str, Any]] = []
    done = False
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: "), f"not an SSE data event: {block[:60]!r}"
        assert not done, "event after [DONE]"
        payload = block.removeprefix("data: ")
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


def streamed_text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    parts = []
    for chunk in chunks:
        for choice in chunk.get("choices", []):
            if choice["index"] == index:
                delta = choice.get("delta")
                parts.append((delta or {}).get("content") or choice.get("text") or "")
    return "".join(parts)
