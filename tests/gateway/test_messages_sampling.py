"""Anthropic's `top_k` and `stop_sequence` on a local model (plugsky-nano), against the live
server: top_k reaches llama.cpp's sampler, and the stop sequence the text ran into is named."""

import json

import pytest

from apps.usage.models import UsageRecord

pytestmark = pytest.mark.xdist_group("live")

VERSION = {"anthropic-version": "2023-06-01"}
# SmolLM2 at temperature 0 counts "1, 2, 3, 4, 5, ..." here: a stop sequence it reliably hits.
COUNT = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


def _message(api, **fields) -> dict:
    body = {"model": "plugsky-nano", "max_tokens": 40, "messages": COUNT, **fields}
    response = api.post("/messages", json=body, headers=VERSION)
    assert response.status_code == 200, response.text
    return response.json()


def _text(message: dict) -> str:
    return "".join(block["text"] for block in message["content"] if block["type"] == "text")


def _streamed_delta(api, **fields) -> tuple[dict, str]:
    """The message_delta of a streamed call, and the streamed text."""
    body = {"model": "plugsky-nano", "max_tokens": 40, "messages": COUNT, "stream": True}
    with api.stream("POST", "/messages", json={**body, **fields}, headers=VERSION) as response:
        assert response.status_code == 200
        raw = "".join(response.iter_text())
    events = [json.loads(block.split("\n")[1][6:]) for block in raw.split("\n\n")[:-1]]
    [delta] = [event for event in events if event["type"] == "message_delta"]
    text = "".join(
        event["delta"].get("text", "") for event in events if event["type"] == "content_block_delta"
    )
    return delta, text


# --- stop_sequence ----------------------------------------------------------------------------


def test_the_stop_sequence_the_text_ran_into_is_named(api):
    unstopped = _text(_message(api, temperature=0))
    assert "4, 5" in unstopped  # the sequence is really in the model's way

    message = _message(api, temperature=0, stop_sequences=["zz", "5"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "5")
    text = _text(message)
    assert unstopped.startswith(text) and "4" in text and "5" not in text


def test_the_streamed_message_delta_names_the_stop_sequence(api):
    delta, text = _streamed_delta(api, temperature=0, stop_sequences=["5", "zz"])
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "5"}
    assert "4" in text and "5" not in text


def test_the_first_of_two_stop_sequences_in_the_text_is_the_one_named(api):
    message = _message(api, temperature=0, stop_sequences=["7", "3"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "3")


def test_an_end_without_a_stop_sequence_names_none(api):
    message = _message(api, temperature=0, max_tokens=4, stop_sequences=["zz"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("max_tokens", None)
    delta, _ = _streamed_delta(api, temperature=0, max_tokens=4, stop_sequences=["zz"])
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}


def test_chat_completions_say_which_stop_sequence_matched_as_vllm_does(api):
    body = {"model": "plugsky-nano", "max_tokens": 40, "messages": COUNT, "temperature": 0}
    response = api.post("/chat/completions", json={**body, "stop": ["5"]})
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", "5")
    plain = api.post("/chat/completions", json={**body, "max_tokens": 4}).json()
    assert "stop_reason" not in plain["choices"][0]


# --- top_k ------------------------------------------------------------------------------------


def test_top_k_of_one_samples_the_likeliest_token_at_any_temperature(api):
    greedy = _text(_message(api, messages=POEM, max_tokens=24, temperature=0))
    sampled = [
        _text(_message(api, messages=POEM, max_tokens=24, temperature=1, top_k=1)) for _ in range(3)
    ]
    assert sampled == [greedy] * 3
    # The control: without top_k, temperature 1 samples (three greedy answers would mean
    # the prompt leaves the model no choice, and the assertion above would prove nothing).
    free = [_text(_message(api, messages=POEM, max_tokens=24, temperature=1)) for _ in range(3)]
    assert free != [greedy] * 3


def test_top_k_calls_are_recorded_as_messages(api):
    response = api.post(
        "/messages",
        json={"model": "plugsky-nano", "max_tokens": 3, "messages": COUNT, "top_k": 5},
        headers=VERSION,
    )
    assert response.status_code == 200
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert (record.endpoint, record.completion_tokens) == ("messages", 3)


def test_a_negative_top_k_is_refused_in_anthropics_envelope(api):
    body = {"model": "plugsky-nano", "max_tokens": 3, "messages": COUNT, "top_k": -1}
    response = api.post("/messages", json=body, headers=VERSION)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "top_k" in error["error"]["message"]
