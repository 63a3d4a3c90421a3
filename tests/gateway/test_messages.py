"""Anthropic's Messages API on the local models, against the live server."""

import base64
import json
import time

import httpx
import pytest

from apps.billing.models import CreditAccount
from apps.billing.pricing import call_cost_micros, cost_header_value
from apps.catalog.selectors import catalog_model
from apps.usage.models import UsageRecord

pytestmark = pytest.mark.xdist_group("live")

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PARIS = [{"role": "user", "content": "What's the weather in Paris?"}]
USAGE_FIELDS = {
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
}


def _messages(api, **body):
    request = {"model": "plugsky-nano", "max_tokens": 20, "messages": HELLO, **body}
    return api.post("/messages", json=request, headers={"anthropic-version": "2023-06-01"})


def _events(raw: str) -> list[tuple[str, dict]]:
    """Anthropic's SSE framing, read strictly: `event:` then `data:`, the names matching."""
    assert raw.endswith("\n\n"), raw[-40:]
    events = []
    for block in raw.split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        name, data = name_line.removeprefix("event: "), json.loads(data_line[6:])
        assert data["type"] == name
        events.append((name, data))
    return events


def _stream(api, **body) -> tuple[list[tuple[str, dict]], str]:
    request = {"model": "plugsky-nano", "max_tokens": 20, "messages": HELLO, "stream": True}
    with api.stream("POST", "/messages", json={**request, **body}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return _events(response.read().decode()), response.headers["x-request-id"]


def _input(usage) -> int:
    """All the input: Anthropic's input_tokens leave out what was read from the prompt cache."""
    return usage["input_tokens"] + usage["cache_read_input_tokens"]


def _balance(organization) -> int:
    return CreditAccount.objects.get(organization=organization).balance_micros


def test_message_has_anthropic_shape_and_usage_is_what_was_debited(api, live_key):
    organization, _ = live_key
    before = _balance(organization)
    response = _messages(api, system="You are terse.", metadata={"user_id": "user-7"})
    assert response.status_code == 200, response.text
    body = response.json()
    request_id = response.headers["x-request-id"]
    assert response.headers["request-id"] == request_id
    assert body["id"] == "msg_" + request_id.removeprefix("req_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "plugsky-nano")
    assert [block["type"] for block in body["content"]] == ["text"]
    assert body["content"][0]["text"]
    assert body["stop_reason"] in {"end_turn", "max_tokens"}
    assert body["stop_sequence"] is None
    usage = body["usage"]
    assert set(usage) == USAGE_FIELDS
    assert usage["cache_creation_input_tokens"] == 0
    record = UsageRecord.objects.get(request_id=request_id)
    assert (record.prompt_tokens, record.completion_tokens) == (
        _input(usage),
        usage["output_tokens"],
    )
    assert record.cached_tokens == usage["cache_read_input_tokens"]  # llama.cpp's prompt cache
    assert record.endpoint == "messages" and record.end_user == "user-7"
    cost = call_cost_micros(
        entry=catalog_model("plugsky-nano"),
        prompt_tokens=_input(usage),
        completion_tokens=usage["output_tokens"],
    )
    assert before - _balance(organization) == cost == record.cost_micros
    assert response.headers["x-plugsky-cost"] == cost_header_value(cost)


def test_system_blocks_are_the_system_prompt(api):
    text = "You are a helpful assistant who answers in French, in one word."
    as_string = _messages(api, max_tokens=1, temperature=0, system=text).json()
    blocks = [{"type": "text", "text": text}]
    as_blocks = _messages(api, max_tokens=1, temperature=0, system=blocks).json()
    longer = _messages(api, max_tokens=1, temperature=0, system=text + " " + text).json()
    assert _input(as_blocks["usage"]) == _input(as_string["usage"])
    assert _input(longer["usage"]) > _input(as_string["usage"]) + 8


def test_max_tokens_gives_stop_reason_max_tokens(api):
    body = _messages(api, max_tokens=3, temperature=0).json()
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 3


def test_stop_sequence_cuts_the_text(api):
    prompt = [{"role": "user", "content": "Count from one to ten in words."}]
    free = _messages(api, messages=prompt, max_tokens=40, temperature=0).json()
    text = free["content"][0]["text"]
    word = text.split()[2]
    stopped = _messages(
        api, messages=prompt, max_tokens=40, temperature=0, stop_sequences=[word, "zzzz"]
    ).json()
    cut = stopped["content"][0]["text"] if stopped["content"] else ""
    assert word not in cut and text.startswith(cut.rstrip())
    assert stopped["usage"]["output_tokens"] < free["usage"]["output_tokens"]
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", word)


def test_stream_events_come_in_anthropic_order_and_usage_is_billed(api, live_key):
    organization, _ = live_key
    before = _balance(organization)
    events, request_id = _stream(api, temperature=0)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 1
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_" + request_id.removeprefix("req_")
    record = UsageRecord.objects.get(request_id=request_id)
    # message_start has the real input usage: the prompt is counted before the first token.
    assert start["usage"]["input_tokens"] == record.prompt_tokens - record.cached_tokens > 0
    assert (start["content"], start["stop_reason"], start["model"]) == ([], None, "plugsky-nano")
    assert events[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text_deltas = [data for name, data in events if name == "content_block_delta"]
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for d in text_deltas)
    assert events[-3][1] == {"type": "content_block_stop", "index": 0}
    final = events[-2][1]
    assert final["delta"]["stop_reason"] in {"end_turn", "max_tokens"}
    assert final["delta"]["stop_sequence"] is None
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.is_stream and record.endpoint == "messages"
    assert (_input(final["usage"]), final["usage"]["output_tokens"]) == (
        record.prompt_tokens,
        record.completion_tokens,
    )
    cost = call_cost_micros(
        entry=catalog_model("plugsky-nano"),
        prompt_tokens=_input(final["usage"]),
        completion_tokens=final["usage"]["output_tokens"],
    )
    assert before - _balance(organization) == cost == record.cost_micros > 0


def test_tool_use_round_trip_with_tool_result(api):
    request = {"model": "plugsky-mini", "max_tokens": 60, "temperature": 0, "tools": [WEATHER]}
    first = api.post(
        "/messages", json={**request, "messages": PARIS, "tool_choice": {"type": "any"}}
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["stop_reason"] == "tool_use"
    call = body["content"][-1]
    assert (call["type"], call["name"]) == ("tool_use", "get_weather")
    assert isinstance(call["input"]["city"], str) and call["id"]
    follow_up = [
        *PARIS,
        {"role": "assistant", "content": body["content"]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call["id"], "content": "18 C, sunny"},
                {"type": "text", "text": "Answer in one sentence."},
            ],
        },
    ]
    second = api.post(
        "/messages", json={**request, "messages": follow_up, "tool_choice": {"type": "none"}}
    )
    assert second.status_code == 200, second.text
    answer = second.json()
    assert answer["stop_reason"] in {"end_turn", "max_tokens"}
    assert [block["type"] for block in answer["content"]] == ["text"]
    record = UsageRecord.objects.get(request_id=second.headers["x-request-id"])
    assert record.prompt_tokens == _input(answer["usage"])


def test_a_tool_result_for_an_unknown_call_is_a_400(api):
    messages = [
        *PARIS,
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]},
    ]
    response = _messages(api, messages=messages, tools=[WEATHER])
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_streamed_tool_use_sends_input_json_deltas(api):
    events, _ = _stream(
        api,
        model="plugsky-mini",
        max_tokens=60,
        temperature=0,
        messages=PARIS,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    starts = [data for name, data in events if name == "content_block_start"]
    block = starts[-1]["content_block"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "get_weather", {})
    index = starts[-1]["index"]
    partial = "".join(
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["index"] == index
    )
    assert isinstance(json.loads(partial)["city"], str)
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert [name for name, _ in events[-3:]] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_x_api_key_authenticates(api, live_key):
    _, raw_key = live_key
    request = {"model": "plugsky-nano", "max_tokens": 2, "messages": HELLO}
    headers = {
        "x-api-key": raw_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "fine-grained-tool-streaming-2025-05-14",
        "Authorization": "",
    }
    response = api.post("/messages", json=request, headers=headers)
    assert response.status_code == 200, response.text


def test_a_bad_key_is_an_authentication_error(api):
    request = {"model": "plugsky-nano", "max_tokens": 2, "messages": HELLO}
    response = api.post("/messages", json=request, headers={"x-api-key": "sk-live-wrong"})
    assert response.status_code == 401
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "Incorrect API key provided: sk-live-…rong. "
            "You can find your API keys in your Plugsky dashboard.",
        },
        "request_id": response.headers["x-request-id"],
    }


def test_an_unknown_model_is_not_found(api):
    response = _messages(api, model="claude-nonexistent")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error == {
        "type": "not_found_error",
        "message": "The model `claude-nonexistent` does not exist or you do not have access to it.",
    }


def test_missing_max_tokens_is_an_invalid_request(api):
    response = api.post("/messages", json={"model": "plugsky-nano", "messages": HELLO})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Missing required parameter: 'max_tokens'.",
    }


def test_an_image_for_a_model_without_vision_is_an_invalid_request(api):
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    content = [image, {"type": "text", "text": "What is this?"}]
    response = _messages(api, messages=[{"role": "user", "content": content}])
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_count_tokens_counts_the_input_a_message_is_billed_for(api):
    response = api.post("/messages/count_tokens", json={"model": "plugsky-nano", "messages": HELLO})
    assert response.status_code == 200, response.text
    usage = _messages(api, max_tokens=2).json()["usage"]
    billed = usage["input_tokens"] + usage["cache_read_input_tokens"]
    assert response.json() == {"input_tokens": billed}
    unknown = api.post("/messages/count_tokens", json={"model": "nope", "messages": HELLO})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"


def test_a_base64_image_reaches_the_vision_model(api):
    from tests.providers.test_vision_reader import invoice_png

    image = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(invoice_png()).decode(),
        },
    }
    question = "What is the total amount on this invoice? Answer with the amount only."
    content = [{"type": "text", "text": question}, image]
    response = _messages(
        api, model="plugsky-vision", temperature=0, messages=[{"role": "user", "content": content}]
    )
    assert response.status_code == 200, response.text
    assert "42.50" in response.json()["content"][0]["text"]


def test_a_client_gone_mid_stream_is_billed_for_what_ran(live_server_url, live_key):
    organization, raw_key = live_key
    body = {
        "model": "plugsky-nano",
        "max_tokens": 2000,
        "stream": True,
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
    }
    client = httpx.Client(timeout=60, headers={"x-api-key": raw_key})
    with client.stream("POST", f"{live_server_url}/v1/messages", json=body) as response:
        request_id = response.headers["x-request-id"]
        deltas = 0
        for line in response.iter_lines():
            deltas += line == "event: content_block_delta"
            if deltas >= 10:
                break
    client.close()
    deadline = time.monotonic() + 20
    while not UsageRecord.objects.filter(request_id=request_id).exists():
        assert time.monotonic() < deadline, "the call was never settled"
        time.sleep(0.1)
    record = UsageRecord.objects.get(request_id=request_id)
    assert (record.status, record.is_client_disconnect) == (499, True)
    assert 8 <= record.completion_tokens < 400
    assert CreditAccount.objects.get(organization=organization).held_micros == 0
