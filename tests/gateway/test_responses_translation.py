"""A Responses request as the chat request it becomes: the mapping alone, without a model."""

import pytest

from apps.gateway.serving.responses import chat_request_for, input_resources
from apps.protocol.errors import APIError
from apps.protocol.openai import request_validate
from apps.protocol.responses import ResponsesRequest


def _translated(**body):
    request = request_validate({"model": "plugsky-nano", **body}, ResponsesRequest)
    items = input_resources(request)
    return items, chat_request_for(request, items).model_dump(exclude_unset=True, by_alias=True)


def test_a_string_input_with_instructions_is_a_system_and_a_user_message():
    items, chat = _translated(input="Hi", instructions="Be brief.", max_output_tokens=16)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert chat["max_completion_tokens"] == 16
    assert items == [
        {
            "id": items[0]["id"],
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": "Hi"}],
        }
    ]
    assert items[0]["id"].startswith("msg_")


def test_images_become_image_url_parts():
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "original"},
    ]
    _, chat = _translated(input=[{"role": "user", "content": content}])
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
    ]


def test_calls_join_the_assistant_turn_and_outputs_become_tool_messages():
    _, chat = _translated(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "w",
                "arguments": '{"c":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "w",
                "arguments": '{"c":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "21"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "19"}],
            },
        ],
        tools=[{"type": "function", "name": "w", "parameters": {"type": "object"}}],
    )
    assistant = chat["messages"][1]
    assert assistant["content"] == "Checking."
    assert [call["id"] for call in assistant["tool_calls"]] == ["call_1", "call_2"]
    assert chat["messages"][2:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "21"},
        {"role": "tool", "tool_call_id": "call_2", "content": "19"},
    ]
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}
    ]


def test_tool_choice_text_format_and_sampling_map_onto_chat_fields():
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    _, chat = _translated(
        input="Hi",
        temperature=0.5,
        top_p=0.9,
        user="u1",
        parallel_tool_calls=False,
        tools=[{"type": "function", "name": "f"}],
        tool_choice={"type": "function", "name": "f"},
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        stream=True,
    )
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert (chat["temperature"], chat["top_p"], chat["user"]) == (0.5, 0.9, "u1")
    assert chat["parallel_tool_calls"] is False
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


def test_a_chat_validation_error_names_the_responses_param():
    with pytest.raises(APIError) as raised:
        _translated(input=[])  # no message at all: chat's `messages` must not be empty
    assert (raised.value.status, raised.value.param) == (400, "input")
