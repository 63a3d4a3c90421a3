"""response_format: JSON mode and JSON Schema (strict) on the local engine, streamed too."""

import json

import jsonschema
import pytest

from tests.openapi import validate_response, validate_schema
from tests.sse import parse_events, streamed_text

pytestmark = pytest.mark.xdist_group("live")

RECIPE = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "servings": {"type": "integer", "minimum": 1, "maximum": 12},
        "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
        "ingredients": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "grams": {"type": "number"},
                },
                "required": ["name", "grams"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "servings", "difficulty", "ingredients"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Give me a pancake recipe as JSON."}]


def _schema_format(schema, *, strict=True):
    return {
        "type": "json_schema",
        "json_schema": {"name": "recipe", "schema": schema, "strict": strict},
    }


def _chat(api, **body):
    request = {
        "model": "plugsky-mini",
        "messages": ASK,
        "temperature": 0,
        "max_tokens": 150,
        **body,
    }
    response = api.post("/chat/completions", json=request)
    assert response.status_code == 200, response.text
    validate_response("post", "/chat/completions", 200, response.json(), request)
    return response.json()["choices"][0]


def test_json_object_mode_gives_a_json_object(api):
    choice = _chat(
        api, response_format={"type": "json_object"}, max_tokens=200, temperature=0.7, seed=5
    )
    assert choice["finish_reason"] == "stop", choice  # seeded: the same answer every run
    assert isinstance(json.loads(choice["message"]["content"]), dict)


def test_strict_json_schema_output_validates(api):
    choice = _chat(api, response_format=_schema_format(RECIPE))
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["message"]["content"]), RECIPE)


def test_strict_json_schema_holds_at_high_temperature_with_n(api):
    request = {
        "model": "plugsky-mini",
        "messages": ASK,
        "response_format": _schema_format(RECIPE),
        "temperature": 1.3,
        "seed": 11,
        "n": 2,
        "max_tokens": 200,
    }
    response = api.post("/chat/completions", json=request)
    assert response.status_code == 200, response.text
    choices = response.json()["choices"]
    assert [choice["index"] for choice in choices] == [0, 1]
    for choice in choices:  # seeded: every choice must finish, and validate
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), RECIPE)


def test_streamed_json_schema_output_validates(api):
    request = {
        "model": "plugsky-mini",
        "messages": ASK,
        "response_format": _schema_format(RECIPE),
        "temperature": 0,
        "max_tokens": 150,
        "stream": True,
    }
    with api.stream("POST", "/chat/completions", json=request) as response:
        assert response.status_code == 200
        chunks, done = parse_events(response.read().decode())
    assert done
    for chunk in chunks:
        validate_schema("CreateChatCompletionStreamResponse", chunk)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(streamed_text(chunks)), RECIPE)


def test_non_strict_schema_with_unsupported_keywords_is_a_hint(api):
    schema = {"type": "object", "properties": {"colour": {"type": "string", "format": "colour"}}}
    choice = _chat(api, response_format=_schema_format(schema, strict=False), max_tokens=30)
    assert choice["message"]["content"].startswith("{")


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        (_schema_format({"type": "objekt"}), "response_format.json_schema.schema"),
        (_schema_format({"type": "object", "required": "title"}),
         "response_format.json_schema.schema"),
        (_schema_format({"type": "string", "pattern": "(?=a)b"}),
         "response_format.json_schema.schema"),
        (_schema_format({"type": "string", "format": "colour"}),
         "response_format.json_schema.schema"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"schema": {}}},
         "response_format.json_schema.name"),
        ({"type": "xml"}, "response_format.type"),
    ],
)  # fmt: skip
def test_invalid_response_formats_get_a_400(api, response_format, param):
    request = {"model": "plugsky-mini", "messages": ASK, "response_format": response_format}
    response = api.post("/chat/completions", json=request)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
