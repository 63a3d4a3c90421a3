"""Bad input gets a 400 in OpenAI's envelope naming its param, never a 500, on every endpoint.

The first half checks `parse_body` alone (no server); the second sends the same kinds of input
to the live server, where the engine and the providers are involved, and checks that the call
was not billed and that the server still answers afterwards.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.billing.models import CreditAccount
from apps.protocol import errors
from apps.protocol.openai import (
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_DEPTH,
    MAX_SCHEMA_DEPTH,
    MAX_TOKEN_ID,
    MAX_TOOLS,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    check_document,
    parse_body,
)

live = pytest.mark.xdist_group("live")

HI = [{"role": "user", "content": "hi"}]
SMOLLM2_VOCAB = 49152  # plugsky-nano
AUDIO_PART = {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
MINILM_VOCAB = 30522  # plugsky-embed-minilm


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "plugsky-nano", "messages": HI, **fields}


def _refusal(body: dict[str, Any] | bytes, schema: type = ChatCompletionRequest, **kwargs: Any):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(errors.APIError) as raised:
        parse_body(raw, schema, **kwargs)
    failure = raised.value
    assert failure.status == 400
    assert failure.type == "invalid_request_error"
    return failure


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _schema(levels: int) -> dict[str, Any]:
    """An items-chain schema nesting `levels` JSON objects deep."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels - 1):
        schema = {"type": "array", "items": schema}
    return schema


# --- Integers: 64 bits at most, never negative where that means nothing ----------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 2**64}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_completion_tokens": INT64_MAX + 1}, "max_completion_tokens"),
        ({"seed": INT64_MAX + 1}, "seed"),
        ({"seed": INT64_MIN - 1}, "seed"),
        ({"seed": 10**30}, "seed"),
    ],
)
def test_chat_integers_beyond_int64_or_negative_are_400s(fields, param):
    failure = _refusal(_chat(**fields))
    assert (failure.param, failure.code) == (param, "invalid_value")


def test_int64_bounds_themselves_are_accepted():
    request = parse_body(json.dumps(_chat(seed=INT64_MIN, max_tokens=INT64_MAX)).encode(),
                         ChatCompletionRequest)  # fmt: skip
    assert (request.seed, request.max_tokens) == (INT64_MIN, INT64_MAX)


@pytest.mark.parametrize(
    "key",
    ["²", "١٢", "-1", "+5", " 5", "1.0", "0x10", "", str(MAX_TOKEN_ID + 1), "9" * 5000],
)
def test_logit_bias_keys_must_be_ascii_token_ids(key):
    failure = _refusal(_chat(logit_bias={key: 1}))
    assert (failure.param, failure.code) == ("logit_bias", "invalid_value")


@pytest.mark.parametrize("bias", [100.5, -101])
def test_logit_bias_values_are_bounded(bias):
    assert _refusal(_chat(logit_bias={"5": bias})).param == "logit_bias"


def test_logit_bias_of_valid_ids_passes():
    raw = json.dumps(_chat(logit_bias={"0": -100, str(MAX_TOKEN_ID): 100, "007": 1})).encode()
    assert parse_body(raw, ChatCompletionRequest).logit_bias == {
        "0": -100, str(MAX_TOKEN_ID): 100, "007": 1
    }  # fmt: skip


@pytest.mark.parametrize(
    ("prompt", "where"),
    [
        ([1, -5], "prompt[1]"),
        ([1, MAX_TOKEN_ID + 1], "prompt[1]"),
        ([2**64], "prompt[0]"),
        ([[1], [2, -1]], "prompt[1][1]"),
        ([True, 2], "prompt[0]"),
        ([1.0, 2], "prompt[0]"),
    ],
)
def test_completion_token_ids_are_bounded(prompt, where):
    failure = _refusal({"model": "plugsky-nano", "prompt": prompt}, CompletionRequest)
    assert (failure.param, failure.code) == ("prompt", "invalid_value")
    assert where in failure.message


@pytest.mark.parametrize("prompt", [["a", 1], [1, [2]], [[1], "a"]])
def test_mixed_prompt_arrays_are_refused(prompt):
    failure = _refusal({"model": "plugsky-nano", "prompt": prompt}, CompletionRequest)
    assert failure.param == "prompt"


@pytest.mark.parametrize("tokens", [[-1], [[5, 2**63]], [[1], [False]]])
def test_embedding_token_ids_are_bounded(tokens):
    failure = _refusal({"model": "plugsky-embed-minilm", "input": tokens}, EmbeddingRequest)
    assert (failure.param, failure.code) == ("input", "invalid_value")


def test_completion_max_tokens_beyond_int64_is_a_400():
    failure = _refusal({"model": "plugsky-nano", "prompt": "x", "max_tokens": 2**63},
                       CompletionRequest)  # fmt: skip
    assert failure.param == "max_tokens"


def test_embedding_dimensions_beyond_int64_is_a_400():
    body = {"model": "plugsky-embed-minilm", "input": "x", "dimensions": 2**64}
    assert _refusal(body, EmbeddingRequest).param == "dimensions"


# --- Strings: valid Unicode only --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"model":"m","messages":[{"role":"user","content":"a\\ud800b"}]}',
         "messages[0].content"),
        (b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"ok"},'
         b'{"type":"text","text":"\\udfff"}]}]}', "messages[0].content[1].text"),
        (b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["\\ud83d"]}',
         "stop[0]"),
        (b'{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"\\udc00"}', "user"),
        (b'{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"k":"\\ud800"}}',
         "metadata.k"),
        (b'{"model":"m","messages":[{"role":"user","content":"hi"}],"logit_bias":{"\\ud800":1}}',
         "logit_bias"),
        # Raw CESU-8 bytes of a surrogate: json decodes them with surrogatepass.
        (b'{"model":"m","messages":[{"role":"user","content":"\xed\xa0\x80"}]}',
         "messages[0].content"),
        (b'{"model":"m","\\ud800":1,"messages":[{"role":"user","content":"hi"}]}', None),
    ],
)  # fmt: skip
def test_lone_surrogates_are_refused_naming_the_string(raw, param):
    failure = _refusal(raw)
    assert (failure.param, failure.code) == (param, "invalid_value")
    assert "surrogate" in failure.message


def test_surrogate_pairs_are_text():
    raw = b'{"model":"m","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}'
    assert parse_body(raw, ChatCompletionRequest).messages[0].content == "\N{GRINNING FACE}"


def test_lone_surrogates_in_completion_prompts_and_embedding_inputs():
    prompt = b'{"model":"m","prompt":["fine","\\ud800"]}'
    assert _refusal(prompt, CompletionRequest).param == "prompt[1]"
    embedding = b'{"model":"m","input":"\\ud800"}'
    assert _refusal(embedding, EmbeddingRequest).param == "input"


def test_nan_and_infinity_are_not_json():
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":' + constant
        assert _refusal(raw + b"}").param is None


# --- Nesting ----------------------------------------------------------------------------------


def test_a_body_nested_thousands_deep_is_a_400_not_a_recursion_error():
    raw = b'{"model":"m","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    failure = _refusal(raw)
    assert failure.code == "invalid_value"
    assert str(MAX_JSON_DEPTH) in failure.message


def test_depth_limit_is_exact():
    # The body is level 1, so the innermost of n arrays at its top field is level n + 1.
    fine = {**_chat(), "x": _nested(MAX_JSON_DEPTH - 1)}
    parse_body(json.dumps(fine).encode(), ChatCompletionRequest)
    failure = _refusal({**_chat(), "x": _nested(MAX_JSON_DEPTH)})
    assert (failure.param, failure.code) == ("x", "invalid_value")


def test_check_document_needs_no_stack():
    deep: Any = "leaf"
    for _ in range(50_000):
        deep = {"a": deep}
    with pytest.raises(ValueError, match="levels deep"):
        check_document({"model": "m", "x": deep})


def test_deep_response_format_schemas_are_400s_naming_the_schema():
    def body(levels: int) -> dict[str, Any]:
        spec = {"name": "deep", "schema": _schema(levels)}
        return _chat(response_format={"type": "json_schema", "json_schema": spec})

    parse_body(json.dumps(body(MAX_SCHEMA_DEPTH)).encode(), ChatCompletionRequest)
    failure = _refusal(body(MAX_SCHEMA_DEPTH + 1))
    assert (failure.param, failure.code) == ("response_format.json_schema.schema", "invalid_value")


def test_deep_tool_parameters_are_400s_naming_the_tool():
    fine = {"type": "function", "function": {"name": "ok", "parameters": _schema(3)}}
    deep = {"type": "function", "function": {"name": "deep", "parameters": _schema(40)}}
    failure = _refusal(_chat(tools=[fine, deep]))
    assert failure.param == "tools[1].function.parameters"


def test_deep_tool_call_arguments_are_400s_naming_them():
    """The gateway parses earlier calls' arguments: nested thousands deep they were a 500."""
    deep = "[" * 100_000 + "]" * 100_000
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": deep}}
    messages = [*HI, {"role": "assistant", "content": None, "tool_calls": [call]}]
    failure = _refusal({"model": "m", "messages": messages})
    assert failure.param == "messages[1].tool_calls[0].function.arguments"
    call["function"]["arguments"] = json.dumps(_nested(MAX_JSON_DEPTH + 1))
    assert _refusal({"model": "m", "messages": messages}).param == failure.param
    call["function"]["arguments"] = "not JSON, passed on as text"
    parse_body(json.dumps({"model": "m", "messages": messages}).encode(), ChatCompletionRequest)


def test_at_most_128_tools():
    tool = {"type": "function", "function": {"name": "f"}}
    assert _refusal(_chat(tools=[tool] * (MAX_TOOLS + 1))).param == "tools"


# --- Messages without content ----------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "system", "developer", "tool", "assistant"])
def test_a_message_without_content_is_a_400(role):
    message: dict[str, Any] = {"role": role}
    if role == "tool":
        message["tool_call_id"] = "call_1"
    missing = _refusal({"model": "m", "messages": [HI[0], message]})
    assert (missing.param, missing.code) == ("messages[1].content", "missing_required_parameter")
    null = _refusal({"model": "m", "messages": [HI[0], {**message, "content": None}]})
    assert (null.param, null.code) == ("messages[1].content", "invalid_type")


def test_an_assistant_message_with_tool_calls_may_have_null_content():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [*HI, {"role": "assistant", "content": None, "tool_calls": [call]}]
    request = parse_body(json.dumps({"model": "m", "messages": messages}).encode(),
                         ChatCompletionRequest)  # fmt: skip
    assert request.messages[1].content is None


# --- Content types ---------------------------------------------------------------------------


def test_a_multipart_body_is_refused_by_its_type():
    failure = _refusal(b"--x\r\n", content_type="multipart/form-data")
    assert (failure.param, failure.code) == (None, "unsupported_content_type")
    assert "application/json" in failure.message


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/x-www-form-urlencoded", "text/plain"]
)
def test_a_json_body_is_read_whatever_its_declared_type(content_type):
    raw = json.dumps(_chat()).encode()
    assert parse_body(raw, ChatCompletionRequest, content_type=content_type).model == "plugsky-nano"


def test_empty_stop_sequences_are_dropped():
    raw = json.dumps(_chat(stop=["", "END", ""])).encode()
    assert parse_body(raw, ChatCompletionRequest).stop_list == ["END"]


# --- Through the live server ------------------------------------------------------------------


def _balance(organization) -> tuple[int, int]:
    account = CreditAccount.objects.get(organization=organization)
    return account.balance_micros, account.held_micros


def _error(response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


@live
@pytest.mark.parametrize("stream", [False, True])
def test_prompt_token_ids_outside_the_vocabulary_are_400s_unbilled(api, live_key, stream):
    organization, _ = live_key
    before = _balance(organization)
    body = {"model": "plugsky-nano", "max_tokens": 2, "stream": stream}
    error = _error(api.post("/completions", json={**body, "prompt": [1, SMOLLM2_VOCAB]}))
    assert (error["param"], error["code"]) == ("prompt", "invalid_value")
    assert str(SMOLLM2_VOCAB - 1) in error["message"]
    assert _balance(organization) == before
    last_id = api.post("/completions", json={**body, "prompt": [1, SMOLLM2_VOCAB - 1]})
    assert last_id.status_code == 200, last_id.text


@live
def test_logit_bias_keys_outside_the_vocabulary_are_400s_unbilled(api, live_key):
    organization, _ = live_key
    before = _balance(organization)
    bias = {"5": 1, str(SMOLLM2_VOCAB): 5}
    chat = _error(api.post("/chat/completions", json=_chat(max_tokens=2, logit_bias=bias)))
    assert (chat["param"], chat["code"]) == ("logit_bias", "invalid_value")
    legacy = api.post("/completions", json={"model": "plugsky-nano", "prompt": "x",
                                            "max_tokens": 2, "logit_bias": bias})  # fmt: skip
    assert _error(legacy)["param"] == "logit_bias"
    assert _balance(organization) == before


@live
def test_embedding_token_ids_outside_the_vocabulary_are_400s_unbilled(api, live_key):
    organization, _ = live_key
    before = _balance(organization)
    body = {"model": "plugsky-embed-minilm", "input": [[101, MINILM_VOCAB]]}
    error = _error(api.post("/embeddings", json=body))
    assert (error["param"], error["code"]) == ("input", "invalid_value")
    assert _balance(organization) == before


@live
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/chat/completions", _chat(max_tokens=2**64), "max_tokens"),
        ("/chat/completions", _chat(seed=2**63), "seed"),
        ("/chat/completions", _chat(logit_bias={"²": 1}), "logit_bias"),
        ("/completions", {"model": "plugsky-nano", "prompt": [2**32 + 1]}, "prompt"),
        ("/embeddings", {"model": "plugsky-embed-minilm", "input": [2**40]}, "input"),
        ("/chat/completions", {"model": "plugsky-nano", "messages": [{"role": "user"}]},
         "messages[0].content"),
        ("/chat/completions",
         _chat(messages=[{"role": "user", "content": [AUDIO_PART]}]),
         "messages[0].content[0].type"),
        ("/chat/completions",
         _chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x"},
                                                      {"type": "file", "file": {}}]}]),
         "messages[0].content[1].type"),
        ("/chat/completions",
         _chat(response_format={"type": "json_schema",
                                "json_schema": {"name": "d", "schema": _schema(200)}}),
         "response_format"),
        ("/chat/completions",
         _chat(tools=[{"type": "function",
                       "function": {"name": "f", "parameters": _schema(MAX_SCHEMA_DEPTH + 1)}}]),
         "tools[0].function.parameters"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_naming_its_param(api, path, body, param):
    assert _error(api.post(path, json=body))["param"] == param


@live
def test_raw_bodies_that_used_to_be_500s(api):
    surrogate = b'{"model":"plugsky-nano","messages":[{"role":"user","content":"\\ud800"}]}'
    deep = b'{"model":"plugsky-nano","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    headers = {"Content-Type": "application/json"}
    error = _error(api.post("/chat/completions", content=surrogate, headers=headers))
    assert error["param"] == "messages[0].content"
    assert (
        "levels deep" in _error(api.post("/completions", content=deep, headers=headers))["message"]
    )
    prompt = b'{"model":"plugsky-nano","prompt":"\\udfff"}'
    assert _error(api.post("/completions", content=prompt, headers=headers))["param"] == "prompt"


@live
def test_a_multipart_upload_is_a_400(api):
    response = api.post("/chat/completions", files={"file": ("a.txt", b"hello")},
                        data={"model": "plugsky-nano"})  # fmt: skip
    assert _error(response)["param"] is None


@live
def test_curl_d_style_json_still_works(api):
    raw = json.dumps(_chat(max_tokens=2)).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = api.post("/chat/completions", content=raw, headers=headers)
    assert response.status_code == 200, response.text


@live
def test_an_empty_stop_sequence_does_not_end_the_answer_at_once(api):
    response = api.post("/chat/completions", json=_chat(max_tokens=3, temperature=0, stop=""))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


@live
@pytest.mark.parametrize("seed", [-1, 2**32 - 1, INT64_MIN, INT64_MAX])
def test_every_int64_seed_is_reproducible(api, seed):
    """llama.cpp reads -1 and 2**32 - 1 as "random" and cannot take 64-bit seeds as such."""
    body = _chat(max_tokens=6, temperature=1.5, seed=seed, n=2)
    first, second = (api.post("/chat/completions", json=body) for _ in range(2))
    assert first.status_code == second.status_code == 200, first.text
    assert [c["message"] for c in first.json()["choices"]] == [
        c["message"] for c in second.json()["choices"]
    ]


@live
def test_the_server_stays_healthy_after_bad_input(api):
    response = api.post("/chat/completions", json=_chat(max_tokens=2))
    assert response.status_code == 200, response.text
