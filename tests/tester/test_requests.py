"""What a tester column sends, and how streamed tool calls are put together for the page."""

import pytest

from apps.tester import services
from apps.tester.services import InvalidTesterRequest, _merge_tool_call, _Progress

# Imported through the module: pytest would collect a bare `tester_…` name as a test.
validate = services.tester_request_validate

BODY = {"model": "plugsky-nano", "messages": [{"role": "user", "content": "hi"}]}


def test_the_tester_always_streams_one_choice_with_usage():
    body = validate({**BODY, "n": 4, "stream": False, "max_completion_tokens": 9})
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["n"] == 1
    assert body["max_tokens"] == 512 and "max_completion_tokens" not in body


def test_json_mode_and_tools_are_passed_on_unchanged():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = validate(
        {**BODY, "response_format": {"type": "json_object"}, "tools": tools, "temperature": 0.2}
    )
    assert body["response_format"] == {"type": "json_object"}
    assert body["tools"] == tools
    assert body["temperature"] == 0.2


@pytest.mark.parametrize("body", [None, [], "text", {**BODY, "model": 3}])
def test_malformed_requests_are_refused(body):
    with pytest.raises(InvalidTesterRequest):
        validate(body)


def test_streamed_tool_call_deltas_are_merged_by_index():
    progress = _Progress()
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather"}}
    _merge_tool_call(progress, first)
    _merge_tool_call(progress, {"index": 0, "function": {"arguments": '{"city": '}})
    merged = _merge_tool_call(progress, {"index": 0, "function": {"arguments": '"Oslo"}'}})
    assert merged == {
        "index": 0,
        "id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
