"""Shared by the Responses API tests: strict parsing of named server-sent events and their
validation against the vendored spec, one schema per event type."""

from __future__ import annotations

import json
from typing import Any

from tests.openapi import validate_schema

EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
}


def parse_named_events(raw: str) -> list[dict[str, Any]]:
    """Every `event: <type>` + `data: <json>` block; fails on other framing or a `[DONE]`."""
    assert raw.endswith("\n\n"), f"stream does not end with a blank line: {raw[-40:]!r}"
    events = []
    for block in raw.split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: "), f"no event name: {block[:60]!r}"
        assert data_line.startswith("data: "), f"no data: {block[:60]!r}"
        event = json.loads(data_line.removeprefix("data: "))
        assert event["type"] == name_line.removeprefix("event: ")
        events.append(event)
    return events


def validate_events(events: list[dict[str, Any]]) -> None:
    for event in events:
        validate_schema(EVENT_SCHEMAS[event["type"]], event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))


# --- The event translation on its own, on chat chunks as the chat core streams them ---------


def _chunk(delta=None, finish_reason=None):
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
    return {"object": "chat.completion.chunk", "choices": [choice]}


USAGE_CHUNK = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


class _Chunks:
    """A chat chunk stream that records whether it was closed."""

    def __init__(self, chunks):
        self.chunks, self.is_closed = list(chunks), False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

    async def aclose(self):
        self.is_closed = True


def _build(status, output, usage, error):
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": status,
        "error": error,
        "incomplete_details": None,
        "instructions": None,
        "model": "m",
        "tools": [],
        "output": output,
        "parallel_tool_calls": True,
        "metadata": {},
        "tool_choice": "auto",
        "temperature": 1.0,
        "top_p": 1.0,
    }
    if usage is not None:
        body["usage"] = usage
    return body


async def _events_of(chunks):
    from apps.gateway.serving.response_output import response_events

    finished = []

    async def on_finished(body):
        finished.append(body)

    stream = response_events(_Chunks(chunks), build=_build, on_finished=on_finished)
    events = [event async for event in stream]
    validate_events(events)
    return events, finished


CALL_START = {
    "index": 0,
    "id": "call_1",
    "type": "function",
    "function": {"name": "f", "arguments": ""},
}


async def test_text_then_a_call_closes_the_message_before_the_call_opens():
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Let me check."}),
        _chunk({"tool_calls": [CALL_START]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        _chunk({}, "tool_calls"),
        USAGE_CHUNK,
    ]
    events, [final] = await _events_of(chunks)
    assert [(e["type"], e.get("output_index")) for e in events[2:]] == [
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == "{}" and final["output"][1]["call_id"] == "call_1"
    assert final["usage"] == {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    assert events[-1]["response"] == final


async def test_an_error_after_the_first_token_ends_as_response_failed():
    error = {"error": {"message": "The engine stopped.", "type": "server_error", "code": "x"}}
    events, [final] = await _events_of([_chunk({"content": "Hal"}), error])
    assert [e["type"] for e in events[-3:]] == [
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    assert final["status"] == "failed" and "usage" not in final
    assert final["error"] == {"code": "server_error", "message": "The engine stopped."}
    assert final["output"][0]["status"] == "incomplete"


async def test_an_empty_answer_still_has_its_message():
    events, [final] = await _events_of([_chunk({}, "stop"), USAGE_CHUNK])
    assert final["output"][0]["content"] == [
        {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    ]
    assert events[-1]["type"] == "response.completed"


async def test_closing_the_events_closes_the_chat_stream():
    from apps.gateway.serving.response_output import response_events

    async def never_called(body):
        raise AssertionError("a closed stream is not finished")

    chunks = _Chunks([_chunk({"content": "a"}), _chunk({"content": "b"}), USAGE_CHUNK])
    stream = response_events(chunks, build=_build, on_finished=never_called)
    assert (await anext(stream))["type"] == "response.created"
    await stream.aclose()
    assert chunks.is_closed
