import pytest

from apps.usage.models import UsageRecord
from tests.openapi import validate_response, validate_schema
from tests.sse import parse_events, streamed_text

pytestmark = pytest.mark.xdist_group("live")

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def _chat(api, **body):
    return api.post("/chat/completions", json={"model": "plugsky-nano", "messages": HELLO, **body})


def test_chat_completion_matches_the_spec_and_is_recorded(api, live_key):
    organization, _ = live_key
    response = _chat(api, max_tokens=12, temperature=0, seed=7, user="end-user-42")
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("post", "/chat/completions", 200, body)
    assert body["object"] == "chat.completion"
    assert body["model"] == "plugsky-nano"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["message"]["refusal"] is None
    assert choice["logprobs"] is None
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert record.organization_id == organization.pk
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert record.model == "plugsky-nano" and record.endpoint == "chat.completions"
    assert record.status == 200 and record.end_user == "end-user-42"
    assert not record.is_stream


def test_max_tokens_gives_finish_reason_length(api):
    body = _chat(api, max_completion_tokens=3, temperature=0).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_stop_sequence_ends_with_finish_reason_stop(api):
    free = _chat(api, max_tokens=30, temperature=0, seed=1).json()
    text = free["choices"][0]["message"]["content"]
    word = text.split()[2]
    stopped = _chat(api, max_tokens=30, temperature=0, seed=1, stop=[word, "zzzz"]).json()
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert word not in stopped["choices"][0]["message"]["content"]
    assert text.startswith(stopped["choices"][0]["message"]["content"].rstrip())


def test_stream_chunks_match_the_spec(api):
    with api.stream(
        "POST",
        "/chat/completions",
        json={"model": "plugsky-nano", "messages": HELLO, "max_tokens": 8, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks, done = parse_events(response.read().decode())
    assert done
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for chunk in chunks:
        validate_schema("CreateChatCompletionStreamResponse", chunk)
        assert chunk["id"] == chunks[0]["id"] and chunk["created"] == chunks[0]["created"]
        assert "usage" not in chunk
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    finish = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finish[-1] in {"stop", "length"} and all(f is None for f in finish[:-1])


def test_stream_with_include_usage(api, live_key):
    with api.stream(
        "POST",
        "/chat/completions",
        json={
            "model": "plugsky-nano",
            "messages": HELLO,
            "max_tokens": 6,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        chunks, done = parse_events(response.read().decode())
        request_id = response.headers["x-request-id"]
    assert done
    *content_chunks, last = chunks
    assert all(chunk["usage"] is None for chunk in content_chunks)
    assert last["choices"] == []
    validate_schema("CreateChatCompletionStreamResponse", last)
    assert last["usage"]["completion_tokens"] == 6
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.is_stream
    assert record.completion_tokens == 6
    assert record.prompt_tokens == last["usage"]["prompt_tokens"]


def test_streamed_text_equals_non_streamed_text_at_temperature_zero(api):
    params = {"max_tokens": 24, "temperature": 0, "seed": 123}
    whole = _chat(api, **params).json()["choices"][0]["message"]["content"]
    with api.stream(
        "POST",
        "/chat/completions",
        json={"model": "plugsky-nano", "messages": HELLO, "stream": True, **params},
    ) as response:
        chunks, _ = parse_events(response.read().decode())
    assert streamed_text(chunks) == whole


def test_n_choices_are_independent_and_counted(api):
    # A long-story prompt: no choice ends before max_tokens, so every choice counts 5 tokens.
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    body = api.post(
        "/chat/completions",
        json={"model": "plugsky-nano", "messages": story, "n": 3, "max_tokens": 5, "seed": 5},
    ).json()
    assert [c["finish_reason"] for c in body["choices"]] == ["length"] * 3
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 15
    single = api.post(
        "/chat/completions",
        json={"model": "plugsky-nano", "messages": story, "max_tokens": 5, "seed": 5},
    ).json()
    assert body["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"messages": HELLO}, 400, "model", "missing_required_parameter"),
        ({"model": "plugsky-nano"}, 400, "messages", "missing_required_parameter"),
        ({"model": "plugsky-nano", "messages": []}, 400, "messages", "invalid_value"),
        ({"model": "plugsky-nano", "messages": HELLO, "temperature": 2.5}, 400, "temperature",
         "invalid_value"),
        ({"model": "plugsky-nano", "messages": [{"role": "robot", "content": "x"}]}, 400,
         "messages[0].role", "invalid_value"),
        ({"model": "plugsky-nano", "messages": HELLO, "stream_options": {"include_usage": True}},
         400, "stream_options", None),
        ({"model": "gpt-nothing", "messages": HELLO}, 404, "model", "model_not_found"),
        ({"model": "plugsky-embed", "messages": HELLO}, 400, "model", "model_not_supported"),
        ({"model": "plugsky-base", "messages": HELLO}, 400, "model", "model_not_supported"),
    ],
)  # fmt: skip
def test_invalid_requests_get_the_envelope(api, body, status, param, code):
    response = api.post("/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]


def test_prompt_over_the_context_window(api):
    long = [{"role": "user", "content": "word " * 5000}]
    response = api.post("/chat/completions", json={"model": "plugsky-nano", "messages": long})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    assert UsageRecord.objects.get(request_id=response.headers["x-request-id"]).status == 400


def test_streamed_prompt_over_the_context_window_is_a_400_not_a_stream(api):
    long = [{"role": "user", "content": "word " * 5000}]
    response = api.post(
        "/chat/completions", json={"model": "plugsky-nano", "messages": long, "stream": True}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
    assert UsageRecord.objects.get(request_id=response.headers["x-request-id"]).status == 400


def test_body_that_is_not_json(api):
    response = api.post("/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]


def test_body_too_large(api):
    response = api.post("/chat/completions", content=b"x" * (9 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
