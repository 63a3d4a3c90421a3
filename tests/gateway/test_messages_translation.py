"""The Messages API's translations, without a server: requests, events and errors."""

import json

import pytest

from apps.gateway.serving.message_events import message_events
from apps.gateway.serving.messages import chat_request, message_from
from apps.protocol import errors
from apps.protocol.anthropic import MessagesRequest, error_response
from apps.protocol.openai import request_validate

WEATHER = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _request(**fields) -> MessagesRequest:
    body = {"model": "plugsky-nano", "max_tokens": 16, "messages": [], **fields}
    return request_validate(body, MessagesRequest)


def _chat_document(**fields) -> dict:
    return chat_request(_request(**fields)).model_dump(exclude_unset=True, mode="json")


def test_a_tool_round_trip_becomes_openai_calls_and_tool_messages():
    document = _chat_document(
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "…", "signature": "sig"},
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks."},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [{"type": "text", "text": "timeout"}],
                    },
                ],
            },
        ],
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        stream=True,
    )
    assert document["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: timeout"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks."}]},
    ]
    assert document["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
        }
    ]
    assert (document["tool_choice"], document["parallel_tool_calls"]) == ("required", False)
    assert (document["stop"], document["user"], document["max_tokens"]) == (["END"], "u-1", 16)
    assert document["stream_options"] == {"include_usage": True}


def test_named_tool_choice_and_base64_images():
    document = _chat_document(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                ],
            }
        ],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    image = document["messages"][0]["content"][0]
    assert image["image_url"]["url"] == "data:image/png;base64,iVBO"
    assert document["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "stream" not in document


def test_a_tool_use_block_from_the_user_is_refused():
    block = {"type": "tool_use", "id": "t", "name": "get_weather", "input": {}}
    with pytest.raises(errors.APIError) as raised:
        _chat_document(messages=[{"role": "user", "content": [block]}])
    assert raised.value.status == 400
    assert raised.value.message == (
        "messages.0.content.0: a `tool_use` block cannot be part of a message with role `user`."
    )


def test_missing_max_tokens_names_it():
    with pytest.raises(errors.APIError) as raised:
        request_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                         MessagesRequest)  # fmt: skip
    assert (raised.value.status, raised.value.param) == (400, "max_tokens")


def test_a_completion_becomes_a_message_with_cached_input_apart():
    completion = {
        "model": "plugsky-nano",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": "Checking.",
                    "tool_calls": [
                        {"id": "call_1", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7,
                  "prompt_tokens_details": {"cached_tokens": 12}},
    }  # fmt: skip
    message = message_from(completion, message_id="msg_1")
    assert message["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 18,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 12,
    }


def _choice(delta=None, finish_reason=None):
    return {"model": "plugsky-nano", "choices": [
        {"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]}  # fmt: skip


class _Chunks:
    """A chat ChunkStream stand-in that records whether it was closed."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self.is_closed = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self):
        self.is_closed = True


async def _all(chunks) -> list[tuple[str, dict]]:
    return [event async for event in message_events(chunks, message_id="msg_1", model="x")]


async def test_text_then_a_tool_call_stream_as_two_blocks():
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": ""}}  # fmt: skip
    chunks = _Chunks(
        [
            _choice({"role": "assistant", "content": ""}),
            _choice({"content": "Hi"}),
            _choice({"tool_calls": [call]}),
            _choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            _choice({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            _choice(finish_reason="tool_calls"),
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
        ]
    )
    events = await _all(chunks)
    assert [data for _, data in events[2:]] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"input_tokens": 9, "output_tokens": 4, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 0}},
        {"type": "message_stop"},
    ]  # fmt: skip
    assert events[0][1]["message"]["model"] == "plugsky-nano"
    assert events[1] == ("ping", {"type": "ping"})
    assert chunks.is_closed


async def test_an_error_after_the_start_ends_the_stream_with_an_error_event():
    failure = {"message": "The engine is down.", "type": "server_error",
               "code": "engine_unavailable", "param": None}  # fmt: skip
    chunks = _Chunks([_choice({"content": "Hi"}), {"error": failure}])
    events = await _all(chunks)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "The engine is down."},
    }
    assert chunks.is_closed


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (errors.service_unavailable("Busy.", retry_after_s=2), 529, "overloaded_error"),
        (errors.internal_error(), 500, "api_error"),
        (errors.invalid_api_key("No."), 401, "authentication_error"),
        (errors.APIError("Denied.", status=403), 403, "permission_error"),
        (errors.model_not_found("m"), 404, "not_found_error"),
        (errors.method_not_allowed("GET", "/v1/messages", ["POST"]), 405,
         "invalid_request_error"),
        (errors.request_too_large(10), 413, "request_too_large"),
        (errors.rate_limit_exceeded("Slow.", type="requests", headers={}), 429,
         "rate_limit_error"),
    ],
)  # fmt: skip
def test_errors_use_anthropics_envelope_and_statuses(error, status, error_type):
    response = error_response(error, request_id="req_1")
    assert response.status_code == status
    assert json.loads(response.content) == {
        "type": "error",
        "error": {"type": error_type, "message": error.message},
        "request_id": "req_1",
    }
    for name, value in error.headers.items():
        assert response[name] == value
