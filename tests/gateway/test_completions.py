import pytest

from apps.usage.models import UsageRecord
from tests.openapi import validate_response, validate_schema
from tests.sse import parse_events, streamed_text

pytestmark = pytest.mark.xdist_group("live")


def _complete(api, **body):
    return api.post("/completions", json={"model": "plugsky-base", **body})


def test_completion_matches_the_legacy_shape(api):
    response = _complete(api, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("post", "/completions", 200, body)
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"]
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    assert body["usage"]["completion_tokens"] <= 5


def test_default_max_tokens_is_sixteen(api):
    body = _complete(api, prompt="Once upon a time", temperature=0).json()
    assert body["usage"]["completion_tokens"] == 16
    assert body["choices"][0]["finish_reason"] == "length"


def test_prompt_list_gives_one_choice_per_prompt_and_sums_usage(api):
    prompts = ["One, two, three,", "Monday, Tuesday,"]
    body = _complete(api, prompt=prompts, max_tokens=4, temperature=0).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    singles = [_complete(api, prompt=p, max_tokens=4, temperature=0).json() for p in prompts]
    assert [c["text"] for c in body["choices"]] == [s["choices"][0]["text"] for s in singles]
    assert body["usage"]["prompt_tokens"] == sum(s["usage"]["prompt_tokens"] for s in singles)
    assert body["usage"]["completion_tokens"] == 8


def test_echo_prepends_the_prompt(api):
    body = _complete(api, prompt="Roses are red,", max_tokens=4, temperature=0, echo=True).json()
    assert body["choices"][0]["text"].startswith("Roses are red,")


def test_token_array_prompt(api):
    body = _complete(api, prompt=[1, 2, 3, 4], max_tokens=3, temperature=0).json()
    assert body["usage"]["prompt_tokens"] >= 4
    assert body["usage"]["completion_tokens"] == 3


def test_chat_model_also_serves_completions(api):
    response = api.post(
        "/completions", json={"model": "plugsky-nano", "prompt": "Hello", "max_tokens": 3}
    )
    assert response.status_code == 200


def test_stream_matches_non_stream_and_the_spec(api):
    params = {"prompt": "The sky is", "max_tokens": 10, "temperature": 0, "seed": 3}
    whole = _complete(api, **params).json()["choices"][0]["text"]
    with api.stream(
        "POST",
        "/completions",
        json={"model": "plugsky-base", "stream": True,
              "stream_options": {"include_usage": True}, **params},
    ) as response:  # fmt: skip
        chunks, done = parse_events(response.read().decode())
        request_id = response.headers["x-request-id"]
    assert done
    for chunk in chunks[:-1]:
        # OpenAI streams `finish_reason: null` until a choice ends; the spec's schema describes
        # only finished objects, so an open choice is checked with its reason filled in.
        closed = [{**c, "finish_reason": c["finish_reason"] or "length"} for c in chunk["choices"]]
        validate_schema("CreateCompletionResponse", {**chunk, "choices": closed})
    assert [c["finish_reason"] for c in chunks[-2]["choices"]] == ["length"]
    assert streamed_text(chunks[:-1]) == whole
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 10
    validate_schema("CreateCompletionResponse", chunks[-1])
    assert UsageRecord.objects.get(request_id=request_id).completion_tokens == 10


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "x", "model": "plugsky-embed"}, 400, "model"),
        ({"prompt": "x", "model": "nope"}, 404, "model"),
        ({"model": "plugsky-base"}, 400, "prompt"),
        ({"prompt": [], "model": "plugsky-base"}, 400, "prompt"),
        ({"prompt": [1, 2], "echo": True, "model": "plugsky-base"}, 400, "echo"),
        ({"prompt": "x", "stream_options": {}, "model": "plugsky-base"}, 400, "stream_options"),
    ],
)
def test_invalid_completion_requests(api, body, status, param):
    response = api.post("/completions", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
