"""Function calling on the local engine, against the live server and the official spec."""

import json

import jsonschema
import pytest

from tests.openapi import validate_response, validate_schema
from tests.sse import parse_events

pytestmark = pytest.mark.xdist_group("live")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}
PARIS = [{"role": "user", "content": "What's the weather in Paris?"}]


def _chat(api, **body):
    request = {"model": "plugsky-mini", "temperature": 0, "max_tokens": 60, **body}
    response = api.post("/chat/completions", json=request)
    assert response.status_code == 200, response.text
    validate_response("post", "/chat/completions", 200, response.json(), request)
    return response.json()


def _arguments_match(call, tool):
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, tool["function"]["parameters"])
    return arguments


def test_required_tool_choice_returns_a_real_tool_call(api):
    body = _chat(api, messages=PARIS, tools=[WEATHER, CLOCK], tool_choice="required")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert _arguments_match(call, WEATHER)["city"] == "Paris"
    assert body["usage"]["completion_tokens"] > 5


def test_named_tool_choice_calls_that_function(api):
    body = _chat(
        api,
        messages=PARIS,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["get_time"]
    _arguments_match(calls[0], CLOCK)


def test_auto_calls_a_tool_when_one_fits(api):
    body = _chat(api, messages=PARIS, tools=[WEATHER, CLOCK], tool_choice="auto")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_auto_answers_in_text_without_leaking_json(api):
    haiku = [{"role": "user", "content": "Write a haiku about the sea."}]
    choice = _chat(api, messages=haiku, tools=[WEATHER])["choices"][0]
    assert choice["finish_reason"] in {"stop", "length"}
    assert "tool_calls" not in choice["message"]
    content = choice["message"]["content"]
    assert content and not content.lstrip().startswith("{") and '"arguments"' not in content


def test_tool_choice_none_answers_in_text(api):
    choice = _chat(api, messages=PARIS, tools=[WEATHER], tool_choice="none")["choices"][0]
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"] and not choice["message"]["content"].startswith("{")


def test_streamed_tool_call_deltas_follow_openai_order(api):
    request = {
        "model": "plugsky-mini",
        "messages": PARIS,
        "tools": [WEATHER],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 60,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with api.stream("POST", "/chat/completions", json=request) as response:
        assert response.status_code == 200
        chunks, done = parse_events(response.read().decode())
    assert done
    for chunk in chunks:
        validate_schema("CreateChatCompletionStreamResponse", chunk)
    *content_chunks, usage_chunk = chunks
    deltas = [c["choices"][0]["delta"] for c in content_chunks]
    # As OpenAI streams a call: the first chunk has the role, content null and the call's head.
    assert deltas[0]["role"] == "assistant" and deltas[0]["content"] is None
    assert "tool_calls" in deltas[0]
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    first = calls[0][0]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [call[0] for call in calls[1:]]
    assert len(fragments) > 2, "arguments should stream in several fragments"
    assert all(set(f) == {"index", "function"} and f["index"] == 0 for f in fragments)
    arguments = "".join(f["function"]["arguments"] for f in fragments)
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])
    finishes = [c["choices"][0]["finish_reason"] for c in content_chunks]
    assert finishes[-1] == "tool_calls" and all(f is None for f in finishes[:-1])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] > 5


def test_a_tool_loop_end_to_end(api):
    tools = [WEATHER, CLOCK]
    first = _chat(api, messages=PARIS, tools=tools)["choices"][0]["message"]
    [call] = first["tool_calls"]
    arguments = _arguments_match(call, WEATHER)
    result = {"city": arguments["city"], "temperature_celsius": 21, "sky": "sunny"}
    history = [
        *PARIS,
        {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)},
    ]
    final = _chat(api, messages=history, tools=tools)["choices"][0]
    assert final["finish_reason"] == "stop"
    assert "tool_calls" not in final["message"]
    assert "21" in final["message"]["content"]


def test_each_of_n_choices_gets_its_own_calls(api):
    body = _chat(api, messages=PARIS, tools=[WEATHER], tool_choice="required", n=2)
    ids = [c["message"]["tool_calls"][0]["id"] for c in body["choices"]]
    assert len(set(ids)) == 2
    singles = _chat(api, messages=PARIS, tools=[WEATHER], tool_choice="required")
    assert body["usage"]["completion_tokens"] == 2 * singles["usage"]["completion_tokens"]


def test_tiny_model_is_held_to_the_call_format_too(api):
    body = _chat(api, model="plugsky-nano", messages=PARIS, tools=[WEATHER], tool_choice="required")
    calls = body["choices"][0]["message"]["tool_calls"]
    assert 1 <= len(calls) <= 8
    assert len({call["id"] for call in calls}) == len(calls)
    for call in calls:
        _arguments_match(call, WEATHER)
        assert call["function"]["name"] == "get_weather"


def test_parallel_tool_calls_false_allows_one_call(api):
    body = _chat(
        api,
        model="plugsky-nano",
        messages=PARIS,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert len(body["choices"][0]["message"]["tool_calls"]) == 1


BAD_SCHEMA_TOOL = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": 7}}}},
}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice"),
        ({"tools": [BAD_SCHEMA_TOOL]}, "tools[0].function.parameters"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]},
         "tools[0].function.name"),
        ({"messages": [*PARIS, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
         "messages[1].tool_call_id"),
    ],
)  # fmt: skip
def test_invalid_tool_requests_get_a_400(api, extra, param):
    request = {"model": "plugsky-mini", "messages": PARIS, **extra}
    response = api.post("/chat/completions", json=request)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_auto_with_a_json_schema_answer(api):
    answer_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "maxLength": 80}},
                "required": ["answer"],
                "additionalProperties": False,
            },
        },
    }
    call = _chat(api, messages=PARIS, tools=[WEATHER], response_format=answer_format)
    assert call["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    capital = [{"role": "user", "content": "What is the capital of France?"}]
    body = _chat(
        api, messages=capital, tools=[WEATHER], tool_choice="none", response_format=answer_format
    )
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message
    assert "Paris" in json.loads(message["content"])["answer"]


def test_logprobs_of_a_text_answer_with_tools(api):
    haiku = [{"role": "user", "content": "Write a haiku about the sea."}]
    choice = _chat(api, messages=haiku, tools=[WEATHER], logprobs=True, max_tokens=12)["choices"][0]
    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == choice["message"]["content"]
