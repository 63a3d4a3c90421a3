"""The pieces of function calling that need no model: scanning, prompts, grammars, schemas."""

import json

import pytest
from llguidance import LLMatcher

from apps.protocol.openai import ChatCompletionRequest
from apps.providers.local_engine.structured import closed
from apps.providers.local_engine.tools import (
    CallScanner,
    Function,
    render_conversation,
    tool_plan,
    tool_stream,
)

WEATHER = Function(
    "get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}}
)
CLOCK = Function("get_time", "", {"type": "object", "properties": {}})
TWO_CALLS = (
    '{"name":"get_weather","arguments":{"city":"Paris \\"Centre\\" {x}"}}\n'
    '{"name":"get_time","arguments":{}}'
)


def _events(text, pieces):
    scanner = CallScanner((WEATHER, CLOCK))
    size = max(1, len(text) // pieces)
    events = []
    for start in range(0, len(text), size):
        events.extend(scanner.feed(text[start : start + size]))
    return events


@pytest.mark.parametrize("pieces", [1, 3, 17, len(TWO_CALLS)])
def test_calls_are_read_however_the_text_is_cut(pieces):
    events = _events(TWO_CALLS, pieces)
    starts = [value for kind, value in events if kind == "start"]
    assert starts == ["get_weather", "get_time"]
    assert [kind for kind, _ in events].count("end") == 2
    first_end = next(i for i, (kind, _) in enumerate(events) if kind == "end")
    arguments = "".join(value for kind, value in events[:first_end] if kind == "arguments")
    assert json.loads(arguments) == {"city": 'Paris "Centre" {x}'}


@pytest.mark.parametrize("pieces", [1, 4])
def test_text_is_content(pieces):
    events = _events("Sunny, 21 degrees {not a call}", pieces)
    assert {kind for kind, _ in events} == {"content"}
    assert "".join(value for _, value in events) == "Sunny, 21 degrees {not a call}"


def _request(**body):
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    )


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER.parameters}}
]


@pytest.mark.parametrize("choice", ["auto", "required", "none"])
def test_grammars_compile(choice):
    plan = tool_plan(_request(tools=TOOLS, tool_choice=choice))
    assert plan is not None
    assert LLMatcher.validate_grammar(plan.grammar(None)) == ""
    assert LLMatcher.validate_grammar(plan.text_grammar(None)) == ""


def test_the_conversation_carries_calls_and_results_in_plain_text():
    request = _request(
        tools=TOOLS,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        ],
    )  # fmt: skip
    plan = tool_plan(request)
    texts = [m.content or "" for m in request.messages]
    rendered = render_conversation(request.messages, texts, plan)
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert rendered[0]["content"].startswith("Be brief.\n\n# Tools")
    assert '"name": "get_weather"' in rendered[0]["content"]
    assert rendered[2]["content"] == '{"name":"get_weather","arguments":{"city":"Paris"}}'
    assert rendered[3]["content"].startswith('The function get_weather returned: {"temp": 21}')
    assert plan is not None and plan.holds_repeats


def test_closing_objects_keeps_every_output_valid():
    merged = {"allOf": [{"properties": {"c": {}}}, {"properties": {"d": {}}}]}
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "merged": merged,
        },
        "$defs": {"x": {"properties": {"y": {}}}},
    }
    result = closed(schema)
    assert result["additionalProperties"] is False
    assert result["properties"]["a"]["additionalProperties"] is False
    assert result["$defs"]["x"]["additionalProperties"] is False
    assert result["properties"]["merged"] == merged  # closing parts of allOf would break it
    assert "additionalProperties" not in schema  # the request's schema is left alone
    assert closed({"type": "object"}) == {"type": "object"}  # no declared properties: any


@pytest.mark.parametrize("choice", ["auto", "required", "none"])
def test_grammars_with_a_json_answer_compile(choice):
    from apps.providers.local_engine.structured import json_answer

    request = _request(
        tools=TOOLS,
        tool_choice=choice,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "strict": True, "schema": {
                "type": "object", "properties": {"answer": {"type": "string"}},
                "required": ["answer"]}},
        },
    )  # fmt: skip
    plan, answer = tool_plan(request), json_answer(request.response_format)
    assert plan is not None and answer is not None
    assert LLMatcher.validate_grammar(plan.grammar(answer)) == ""
    assert LLMatcher.validate_grammar(plan.text_grammar(answer)) == ""


def _tools_request(**fields):
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER.parameters},
    }
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "tools": [tool], **fields}
    )


def _engine(text, *, stop_reason):
    async def start(body):
        yield {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        finish = {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": stop_reason}
        yield {"choices": [finish]}

    return start


async def _finishes(start, plan):
    chunks = [chunk async for chunk in tool_stream(start, {"max_tokens": 50}, plan, None)]
    return [
        (choice["finish_reason"], choice.get("stop_reason"))
        for chunk in chunks
        for choice in chunk.get("choices") or []
        if choice.get("finish_reason")
    ]


async def test_a_text_answer_keeps_the_stop_sequence_that_ended_it():
    plan = tool_plan(_tools_request())
    start = _engine("It is sunny.", stop_reason="END")
    assert await _finishes(start, plan) == [("stop", "END")]


async def test_an_answer_that_called_a_tool_names_no_stop_sequence():
    plan = tool_plan(_tools_request(tool_choice="required"))
    start = _engine('{"name":"get_weather","arguments":{"city":"Paris"}}', stop_reason="END")
    assert await _finishes(start, plan) == [("tool_calls", None)]
