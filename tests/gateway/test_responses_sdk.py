"""The official openai SDK's client.responses against a live server: only base_url changes."""

import json

import openai
import pytest

from apps.usage.models import UsageRecord

pytestmark = pytest.mark.xdist_group("live")

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": False,
}


@pytest.fixture
def client(live_server_url, live_key):
    _, raw_key = live_key
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw_key, max_retries=0)


def test_create_and_continue(client):
    first = client.responses.create(
        model="plugsky-nano", input="Say hello.", max_output_tokens=16, temperature=0
    )
    assert first.object == "response" and first.status in {"completed", "incomplete"}
    assert first.output_text
    assert first.usage is not None and 0 < first.usage.output_tokens <= 16
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens
    second = client.responses.create(
        model="plugsky-nano",
        input="Say it again.",
        previous_response_id=first.id,
        max_output_tokens=16,
    )
    assert second.previous_response_id == first.id
    assert second.usage is not None and second.usage.input_tokens > first.usage.input_tokens
    assert client.responses.retrieve(second.id).output_text == second.output_text
    items = client.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["message"]
    assert client.responses.delete(second.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)


def test_stream_text(client):
    with client.responses.stream(
        model="plugsky-nano", input="What is 2+2?", max_output_tokens=20, temperature=0
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == "".join(deltas)
    assert final.usage is not None
    record = UsageRecord.objects.get(request_id=_request_id_of(final))
    assert record.is_stream and record.completion_tokens == final.usage.output_tokens


def test_stream_cut_by_max_output_tokens_ends_incomplete(client):
    # The SDK's get_final_response() wants response.completed (as against OpenAI): read events.
    with client.responses.stream(
        model="plugsky-nano", input="Write a long story about the sea.", max_output_tokens=16
    ) as stream:
        events = list(stream)
    terminal = events[-1]
    assert terminal.type == "response.incomplete"
    assert terminal.response.incomplete_details is not None
    assert terminal.response.incomplete_details.reason == "max_output_tokens"
    assert terminal.response.usage is not None and terminal.response.usage.output_tokens == 16
    record = UsageRecord.objects.get(request_id=_request_id_of(terminal.response))
    assert record.completion_tokens == 16 and record.status == 200


def _request_id_of(response) -> str:
    return "req_" + response.id.removeprefix("resp_")


def test_function_call_then_its_output_in_a_follow_up_turn(client):
    question = {"role": "user", "content": "What's the weather in Paris?"}
    with client.responses.stream(
        model="plugsky-mini",
        input=[question],
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=60,
        temperature=0,
    ) as stream:
        done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    [call] = [item for item in final.output if item.type == "function_call"]
    assert call.name == "get_weather" and done[0].arguments == call.arguments
    city = json.loads(call.arguments)["city"]
    follow_up = client.responses.create(
        model="plugsky-mini",
        tools=[WEATHER],
        temperature=0,
        max_output_tokens=60,
        input=[
            question,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": json.dumps({"city": city, "temperature_celsius": 21}),
            },
        ],
    )
    assert follow_up.status == "completed"
    assert [item.type for item in follow_up.output] == ["message"]
    assert follow_up.output_text


def test_errors_reach_the_sdk_as_its_exceptions(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="plugsky-nano", input="Hi", previous_response_id="resp_x")
    assert raised.value.code == "previous_response_not_found"
    assert raised.value.param == "previous_response_id"
