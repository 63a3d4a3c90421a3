"""Anthropic's own Python SDK against a live server, changing only base_url and the key."""

import anthropic
import pytest

from apps.usage.models import UsageRecord

pytestmark = pytest.mark.xdist_group("live")

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def client(live_server_url, live_key):
    _, raw_key = live_key
    return anthropic.Anthropic(base_url=live_server_url, api_key=raw_key, max_retries=0)


def _record(message_id: str) -> UsageRecord:
    return UsageRecord.objects.get(request_id="req_" + message_id.removeprefix("msg_"))


def test_messages_create_answers_and_bills_its_usage(client):
    message = client.messages.create(
        model="plugsky-nano",
        max_tokens=12,
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert message.role == "assistant" and message.type == "message"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in {"end_turn", "max_tokens"}
    record = _record(message.id)
    assert message.usage.output_tokens == record.completion_tokens <= 12
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == (
        record.prompt_tokens
    )


def test_messages_stream_gives_the_text_and_the_final_usage(client):
    with client.messages.stream(
        model="plugsky-nano",
        max_tokens=10,
        messages=[{"role": "user", "content": "Count from one to ten."}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == final.content[0].text != ""
    record = _record(final.id)
    assert final.usage.output_tokens == record.completion_tokens
    assert final.usage.input_tokens > 0


def test_a_tool_use_comes_back_as_a_tool_use_block(client):
    message = client.messages.create(
        model="plugsky-mini",
        max_tokens=60,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    (call,) = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input, dict)
    assert message.stop_reason == "tool_use"


def test_an_unknown_model_is_the_sdks_not_found_error(client):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )
