"""What the chat core produced, as the Responses API gives it: output items, usage, and the
named events of a stream in OpenAI's order.

A streamed response opens each output item when its first token arrives and closes it when
the next item begins or the answer ends: `output_item.added`, `content_part.added`,
`output_text.delta`… `output_text.done`, `content_part.done`, `output_item.done` for text;
`output_item.added`, `function_call_arguments.delta`… `.done`, `output_item.done` for a call.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from apps.gateway.serving.common import ChunkStream

Item = dict[str, Any]
Event = dict[str, Any]
EventStream = AsyncGenerator[Event, None]
# (status, output items, usage, error) -> the response object in that state.
ResponseBuilder = Callable[[str, list[Item], dict[str, Any] | None, dict[str, Any] | None], Item]
# OpenAI's ResponseErrorCode has no generic client-side value; a failure mid-stream is ours.
_ERROR_CODES = {"rate_limit_exceeded"}


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(text: str, *, item_id: str, status: str) -> Item:
    content = [text_part(text)] if status != "in_progress" else []
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def call_item(*, item_id: str, call_id: str, name: str, arguments: str, status: str) -> Item:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def status_of(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason == "length" else "completed"


def usage_of(chat_usage: dict[str, Any]) -> dict[str, Any]:
    """A chat usage object as the Responses API names its fields: the same billed counts."""
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    return {
        "input_tokens": chat_usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": chat_usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": chat_usage["prompt_tokens"] + chat_usage["completion_tokens"],
    }


def output_of(chat_body: dict[str, Any]) -> tuple[str, list[Item]]:
    """(status, output items) of a finished chat completion."""
    choice = chat_body["choices"][0]
    message, status = choice["message"], status_of(choice["finish_reason"])
    calls = message.get("tool_calls") or []
    items = []
    if message.get("content") or not calls:
        items.append(message_item(message.get("content") or "", item_id=new_item_id("msg"),
                                  status=status))  # fmt: skip
    for call in calls:
        function = call["function"]
        items.append(call_item(item_id=new_item_id("fc"), call_id=call["id"],
                               name=function["name"], arguments=function["arguments"],
                               status="completed"))  # fmt: skip
    return status, items


async def response_events(
    chunks: ChunkStream,
    *,
    build: ResponseBuilder,
    on_finished: Callable[[Item], Awaitable[None]],
) -> EventStream:
    """The events of a streamed response; `on_finished` gets the final response object before
    the terminal event goes out, so a client that continues from it at once finds it stored.

    Closing this stream early (a client gone) closes the chat stream, which settles the call.
    """
    events = _Events()
    try:
        yield events.next("response.created", response=build("in_progress", [], None, None))
        yield events.next("response.in_progress", response=build("in_progress", [], None, None))
        async for chunk in chunks:
            for event in events.feed(chunk):
                yield event
        for event in events.finish():
            yield event
        final = build(events.status, events.output, events.usage, events.error)
        await on_finished(final)
        yield events.next(f"response.{events.status}", response=final)
    finally:
        await chunks.aclose()


@dataclass
class _Events:
    """The state of a streamed response: output so far, the item open now, sequence numbers."""

    sequence_number: int = 0
    output: list[Item] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    calls: dict[int, int] = field(default_factory=dict)  # chat tool-call index -> output index
    open_index: int | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return "failed" if self.error is not None else status_of(self.finish_reason)

    def next(self, event_type: str, **fields: Any) -> Event:
        event = {"type": event_type, **fields, "sequence_number": self.sequence_number}
        self.sequence_number += 1
        return event

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        if "error" in chunk:
            failure = chunk["error"]
            code = failure.get("code") if failure.get("code") in _ERROR_CODES else "server_error"
            self.error = {"code": code, "message": failure.get("message", "")}
            return []
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        out: list[Event] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text(delta["content"])
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return out

    def finish(self) -> list[Event]:
        """Close the open item; an answer with no output at all still gets its (empty) message."""
        out = self._close()
        if not self.output and self.error is None:
            out += self._open_message()
            out += self._close()
        return out

    def _text(self, delta: str) -> list[Event]:
        out = [] if self._is_open("message") else self._close() + self._open_message()
        self.text.append(delta)
        ids = self._ids()
        return [*out, self.next("response.output_text.delta", **ids, delta=delta, logprobs=[])]

    def _call(self, call: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if call["index"] not in self.calls:
            out += self._close()
            function = call.get("function") or {}
            item = call_item(item_id=new_item_id("fc"), call_id=call["id"],
                             name=function.get("name", ""), arguments="",
                             status="in_progress")  # fmt: skip
            out.append(self._open(item))
            self.calls[call["index"]] = len(self.output) - 1
        arguments = (call.get("function") or {}).get("arguments") or ""
        if arguments:
            item = self.output[self.calls[call["index"]]]
            item["arguments"] += arguments
            out.append(self.next("response.function_call_arguments.delta",
                                 item_id=item["id"], output_index=self.calls[call["index"]],
                                 delta=arguments))  # fmt: skip
        return out

    def _is_open(self, item_type: str) -> bool:
        return self.open_index is not None and self.output[self.open_index]["type"] == item_type

    def _ids(self) -> dict[str, Any]:
        assert self.open_index is not None
        item_id = self.output[self.open_index]["id"]
        return {"item_id": item_id, "output_index": self.open_index, "content_index": 0}

    def _open(self, item: Item) -> Event:
        self.output.append(item)
        self.open_index = len(self.output) - 1
        return self.next("response.output_item.added", output_index=self.open_index,
                         item=dict(item))  # fmt: skip

    def _open_message(self) -> list[Event]:
        self.text = []
        added = self._open(message_item("", item_id=new_item_id("msg"), status="in_progress"))
        part = self.next("response.content_part.added", **self._ids(), part=text_part(""))
        return [added, part]

    def _close(self) -> list[Event]:
        if self.open_index is None:
            return []
        index, item = self.open_index, self.output[self.open_index]
        is_last_cut = self.finish_reason == "length"
        item["status"] = "incomplete" if is_last_cut or self.error else "completed"
        out = self._close_message() if item["type"] == "message" else self._close_call()
        self.open_index = None
        return [*out, self.next("response.output_item.done", output_index=index, item=item)]

    def _close_message(self) -> list[Event]:
        ids, text = self._ids(), "".join(self.text)
        self.output[ids["output_index"]]["content"] = [text_part(text)]
        return [
            self.next("response.output_text.done", **ids, text=text, logprobs=[]),
            self.next("response.content_part.done", **ids, part=text_part(text)),
        ]

    def _close_call(self) -> list[Event]:
        assert self.open_index is not None
        item = self.output[self.open_index]
        return [self.next("response.function_call_arguments.done", item_id=item["id"],
                          output_index=self.open_index, name=item["name"],
                          arguments=item["arguments"])]  # fmt: skip
