"""Token logprobs: chat shape on /chat/completions, legacy shape on /completions, streamed too."""

import pytest

from tests.openapi import validate_response, validate_schema
from tests.sse import parse_events, streamed_text

pytestmark = pytest.mark.xdist_group("live")

HELLO = [{"role": "user", "content": "Say hello."}]


def _stream(api, path, body):
    with api.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        chunks, done = parse_events(response.read().decode())
    assert done
    return chunks


def test_chat_logprobs_with_top_logprobs(api):
    request = {
        "model": "plugsky-mini",
        "messages": HELLO,
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 3,
    }
    body = api.post("/chat/completions", json=request).json()
    validate_response("post", "/chat/completions", 200, body, request)
    choice = body["choices"][0]
    tokens = choice["logprobs"]["content"]
    assert len(tokens) == body["usage"]["completion_tokens"] == 6
    assert "".join(t["token"] for t in tokens) == choice["message"]["content"]
    for token in tokens:
        assert token["logprob"] <= 0
        assert len(token["top_logprobs"]) == 3
        assert token["top_logprobs"][0]["logprob"] >= token["top_logprobs"][-1]["logprob"]
        assert bytes(token["bytes"]).decode(errors="replace")
    # at temperature 0 the chosen token is the most likely one
    assert all(t["token"] == t["top_logprobs"][0]["token"] for t in tokens)


def test_chat_logprobs_without_top_logprobs(api):
    request = {"model": "plugsky-mini", "messages": HELLO, "max_tokens": 3, "logprobs": True}
    body = api.post("/chat/completions", json=request).json()
    tokens = body["choices"][0]["logprobs"]["content"]
    # One entry per generated token (unseeded, the answer may end before max_tokens).
    assert len(tokens) == body["usage"]["completion_tokens"] > 0
    assert all(t["top_logprobs"] == [] and t["logprob"] <= 0 for t in tokens)


def test_completions_logprobs_zero_gives_the_chosen_tokens_only(api):
    request = {"model": "plugsky-base", "prompt": "Hello", "max_tokens": 3, "logprobs": 0}
    logprobs = api.post("/completions", json=request).json()["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == 3
    assert logprobs["top_logprobs"] == [{}, {}, {}]


def test_streamed_chat_logprobs(api):
    request = {
        "model": "plugsky-mini",
        "messages": HELLO,
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    chunks = _stream(api, "/chat/completions", request)
    tokens = []
    for chunk in chunks:
        validate_schema("CreateChatCompletionStreamResponse", chunk)
        logprobs = chunk["choices"][0]["logprobs"]
        if logprobs:
            tokens.extend(logprobs["content"])
    assert len(tokens) == 6
    assert "".join(t["token"] for t in tokens) == streamed_text(chunks)


def test_completions_logprobs_in_the_legacy_shape(api):
    request = {
        "model": "plugsky-base",
        "prompt": "The capital of France is",
        "max_tokens": 5,
        "temperature": 0,
        "logprobs": 2,
    }
    body = api.post("/completions", json=request).json()
    validate_response("post", "/completions", 200, body, request)
    choice = body["choices"][0]
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == 5
    assert len(logprobs["top_logprobs"]) == len(logprobs["text_offset"]) == 5
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert logprobs["text_offset"][0] == 0
    for token, offset, next_offset in zip(
        logprobs["tokens"], logprobs["text_offset"], logprobs["text_offset"][1:], strict=False
    ):
        assert next_offset == offset + len(token)
    assert all(len(top) <= 2 and top for top in logprobs["top_logprobs"])


def test_streamed_completions_logprobs(api):
    request = {"model": "plugsky-base", "prompt": "One, two,", "max_tokens": 4, "logprobs": 1}
    chunks = _stream(api, "/completions", request)
    tokens, offsets = [], []
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice["logprobs"]:
                tokens.extend(choice["logprobs"]["tokens"])
                offsets.extend(choice["logprobs"]["text_offset"])
    assert len(tokens) == 4
    assert "".join(tokens) == streamed_text(chunks)
    assert offsets == sorted(offsets) and offsets[0] == 0


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/chat/completions", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ("/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("/completions", {"logprobs": 6}, "logprobs"),
        ("/completions", {"logprobs": 2, "echo": True}, "logprobs"),
    ],
)
def test_logprobs_out_of_range(api, path, extra, param):
    if path == "/completions":
        request = {"model": "plugsky-base", "prompt": "Hi", **extra}
    else:
        request = {"model": "plugsky-mini", "messages": HELLO, **extra}
    response = api.post(path, json=request)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
