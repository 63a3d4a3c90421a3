"""A chat completion stream (OpenAI chunks) as Anthropic's stream of Messages events.

The order is Anthropic's: `message_start`, a `ping`, then per content block (text, or one per
tool call) `content_block_start`, its deltas and `content_block_stop`, each with the block's
`index`; then `message_delta` with `stop_reason` and the usage, and `message_stop`. An error
after the stream started ends it with one `error` event instead.

Input usage in `message_start`: the prompt's tokens as the chat stream has counted them by its
first chunk (`ChunkStream.usage`); `message_delta` carries the final counts of input and output
(Anthropic's `message_delta` usage is cumulative; its SDKs take `input_tokens` from there when it
is present).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from apps.gateway.serving.common import ChunkStream
from apps.protocol.anthropic import error_type_for
from apps.providers.base import Usage

Event = tuple[str, dict[str, Any]]  # (SSE event name, its data)
# The events of a streamed message; closing it closes the chat stream, which settles the call.
EventStream = AsyncGenerator[Event, None]

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
# An error chunk tells OpenAI's type and code, not the status: the code says which it was.
_ERROR_STATUS_BY_CODE = {
    "service_unavailable": 503,
    "engine_unavailable": 503,
    "model_unavailable": 503,
    "upstream_unavailable": 503,
    "upstream_rate_limited": 503,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
}


async def message_events(chunks: ChunkStream, *, message_id: str, model: str) -> EventStream:
    """The events of the message the chat stream `chunks` answers with."""
    try:
        # The first chunk names the model that answers (an alias resolved).
        first = await anext(chunks, None)
        view = _EventView(model=(first or {}).get("model", model))
        # The prompt is counted by the time the first chunk exists (ChunkStream.usage).
        usage = getattr(chunks, "usage", None)
        yield "message_start", view.message_start(message_id, usage)
        yield "ping", {"type": "ping"}
        async for chunk in _prepended(first, chunks):
            for event in view.events_of(chunk):
                yield event
            if view.has_failed:
                return
        for event in view.closing_events():
            yield event
    finally:
        await chunks.aclose()  # a client gone: the chat stream settles for what ran


async def _prepended(
    first: dict[str, Any] | None, rest: ChunkStream
) -> AsyncIterator[dict[str, Any]]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


@dataclass
class _EventView:
    """The state of the message being streamed: its open block and what ended it."""

    model: str
    block_index: int = -1  # of the open block, if one is open
    open_block: str | None = None  # "text" or "tool_use"
    finish_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any] | None = None
    has_failed: bool = False
    pending: list[Event] = field(default_factory=list)

    def message_start(self, message_id: str, usage: Usage | None) -> dict[str, Any]:
        prompt = usage.prompt_tokens if usage else 0
        cached = usage.cached_tokens if usage else 0
        usage_fields = {
            # Anthropic's input_tokens leaves out what came from the cache (as at the end).
            "input_tokens": prompt - cached,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
        }
        message: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_fields,
        }
        return {"type": "message_start", "message": message}

    def events_of(self, chunk: dict[str, Any]) -> list[Event]:
        if "error" in chunk:
            self.has_failed = True
            return [("error", _error_event(chunk["error"]))]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            self._read_delta(choice.get("delta") or {})
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.stop_sequence = choice.get("stop_reason")
                self._close_block()
        events, self.pending = self.pending, []
        return events

    def closing_events(self) -> list[Event]:
        self._close_block()
        delta = stop_fields(self.finish_reason, self.stop_sequence)
        usage = message_usage(self.usage) if self.usage else {"output_tokens": 0}
        self.pending += [
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
            ("message_stop", {"type": "message_stop"}),
        ]
        events, self.pending = self.pending, []
        return events

    def _read_delta(self, delta: dict[str, Any]) -> None:
        if delta.get("content"):
            if self.open_block != "text":
                self._open_block({"type": "text", "text": ""}, kind="text")
            text = {"type": "text_delta", "text": delta["content"]}
            self._delta(text)
        for call in delta.get("tool_calls") or []:
            self._read_call(call)

    def _read_call(self, call: dict[str, Any]) -> None:
        function = call.get("function") or {}
        if call.get("id"):  # the first delta of a call: a new block
            block = {"type": "tool_use", "id": call["id"], "name": function["name"], "input": {}}
            self._open_block(block, kind="tool_use")
        if function.get("arguments"):
            self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})

    def _open_block(self, block: dict[str, Any], *, kind: str) -> None:
        self._close_block()
        self.block_index += 1
        self.open_block = kind
        start = {"type": "content_block_start", "index": self.block_index, "content_block": block}
        self.pending.append(("content_block_start", start))

    def _delta(self, delta: dict[str, Any]) -> None:
        event = {"type": "content_block_delta", "index": self.block_index, "delta": delta}
        self.pending.append(("content_block_delta", event))

    def _close_block(self) -> None:
        if self.open_block is None:
            return
        self.open_block = None
        stop = {"type": "content_block_stop", "index": self.block_index}
        self.pending.append(("content_block_stop", stop))


def _error_event(error: dict[str, Any]) -> dict[str, Any]:
    status = _ERROR_STATUS_BY_CODE.get(error.get("code") or "")
    if status is None:
        status = 500 if error.get("type") == "server_error" else 400
    body = {"type": error_type_for(status), "message": error.get("message", "")}
    return {"type": "error", "error": body}


def stop_fields(finish_reason: str | None, stop_sequence: Any) -> dict[str, Any]:
    """Anthropic's `stop_reason` and `stop_sequence` of a chat finish: `stop_sequence` is the
    choice's `stop_reason` (vLLM's name for it), set by backends that know which one matched."""
    if finish_reason in (None, "stop") and isinstance(stop_sequence, str) and stop_sequence:
        return {"stop_reason": "stop_sequence", "stop_sequence": stop_sequence}
    return {
        "stop_reason": _STOP_REASONS.get(finish_reason or "stop", "end_turn"),
        "stop_sequence": None,
    }


def message_usage(usage: dict[str, Any]) -> dict[str, int]:
    """Anthropic's usage of an OpenAI usage object: cached input is counted apart."""
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "input_tokens": int(usage["prompt_tokens"]) - cached,
        "output_tokens": int(usage["completion_tokens"]),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }
