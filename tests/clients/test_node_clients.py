"""The openai Node SDK and the Vercel AI SDK against a live server, changing only the base URL:
each call answers text, and the usage the SDK reports is the call's UsageRecord and its debit."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from apps.billing.models import LedgerEntry
from apps.billing.pricing import call_cost_micros
from apps.catalog.selectors import catalog_model
from apps.usage.models import UsageRecord

pytestmark = pytest.mark.xdist_group("live")

SETTLED_WITHIN_S = 10
ENDPOINTS = {"resp_": "responses", "chatcmpl-": "chat.completions"}  # by the id's prefix


def _request_id_of(response_id: str) -> str:
    """chatcmpl-<hex> and resp_<hex> are the ids of request req_<hex>."""
    hex_part = response_id.removeprefix("chatcmpl-").removeprefix("resp_")
    assert hex_part != response_id, response_id
    return f"req_{hex_part}"


def _settled(request_id: str) -> UsageRecord:
    """The call's UsageRecord: a stream's may be written just after its last byte was read."""
    deadline = time.monotonic() + SETTLED_WITHIN_S
    while (record := UsageRecord.objects.filter(request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, f"{request_id} was never settled"
        time.sleep(0.1)
    return record


def _assert_billed(record: UsageRecord, *, organization: Any, model: str, endpoint: str) -> None:
    """Billed as its model's prices say, recorded under its endpoint's name."""
    entry = catalog_model(model)
    assert entry is not None
    expected = call_cost_micros(
        entry=entry,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
    )
    assert record.organization_id == organization.pk
    assert (record.endpoint, record.model, record.status) == (endpoint, model, 200)
    assert record.prompt_tokens > 0 and record.completion_tokens > 0
    assert record.cost_micros == expected > 0
    debit = LedgerEntry.objects.get(usage_record=record)
    assert (debit.kind, debit.amount_micros) == ("usage", -expected)


def _record_of(result: dict[str, Any]) -> UsageRecord:
    """The call's record, found by the x-request-id header, which must agree with the id."""
    request_id = _request_id_of(result["id"])
    assert result["requestId"] == request_id
    return _settled(request_id)


def _openai_chat_usage(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
        usage["prompt_tokens_details"]["cached_tokens"],
        usage["completion_tokens_details"]["reasoning_tokens"],
    )


def _openai_responses_usage(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (
        usage["input_tokens"],
        usage["output_tokens"],
        usage["total_tokens"],
        usage["input_tokens_details"]["cached_tokens"],
        usage["output_tokens_details"]["reasoning_tokens"],
    )


def _ai_sdk_usage(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (
        usage["inputTokens"],
        usage["outputTokens"],
        usage["totalTokens"],
        usage["inputTokenDetails"]["cacheReadTokens"],
        usage["outputTokenDetails"]["reasoningTokens"],
    )


def _usage_of(record: UsageRecord) -> tuple[int, int, int, int, int]:
    return (
        record.prompt_tokens,
        record.completion_tokens,
        record.total_tokens,
        record.cached_tokens,
        record.reasoning_tokens,
    )


def test_openai_chat_completions_create(node, live_key):
    organization, _ = live_key
    result = node("openai_chat.mjs", mode="create", model="plugsky-nano")
    assert result["text"].strip()
    record = _record_of(result)
    assert _openai_chat_usage(result["usage"]) == _usage_of(record)
    assert not record.is_stream
    _assert_billed(
        record, organization=organization, model="plugsky-nano", endpoint="chat.completions"
    )


def test_openai_chat_completions_stream(node, live_key):
    organization, _ = live_key
    result = node("openai_chat.mjs", mode="stream", model="plugsky-nano")
    assert result["text"].strip()
    [response_id] = result["ids"]  # one id on every chunk
    assert result["finishReasons"] == ["stop"]
    assert result["lastChoices"] == 0  # the usage chunk
    record = _record_of({**result, "id": response_id})
    assert _openai_chat_usage(result["usage"]) == _usage_of(record)
    assert record.is_stream
    _assert_billed(
        record, organization=organization, model="plugsky-nano", endpoint="chat.completions"
    )


def test_openai_responses_create(node, live_key):
    organization, _ = live_key
    result = node("openai_responses.mjs", mode="create", model="plugsky-nano")
    assert result["status"] == "completed"
    assert result["text"].strip()
    record = _record_of(result)
    assert _openai_responses_usage(result["usage"]) == _usage_of(record)
    assert not record.is_stream
    _assert_billed(record, organization=organization, model="plugsky-nano", endpoint="responses")


def test_openai_responses_stream(node, live_key):
    organization, _ = live_key
    result = node("openai_responses.mjs", mode="stream", model="plugsky-nano")
    assert result["status"] == "completed"
    assert result["text"].strip() and result["text"] == result["finalText"]
    deltas = result["types"].count("response.output_text.delta")
    assert result["types"] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * deltas,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    record = _settled(_request_id_of(result["id"]))
    assert _openai_responses_usage(result["usage"]) == _usage_of(record)
    assert record.is_stream
    _assert_billed(record, organization=organization, model="plugsky-nano", endpoint="responses")


@pytest.mark.parametrize(
    ("mode", "is_stream", "prefix"),
    [
        ("responses-generate", False, "resp_"),
        ("responses-stream", True, "resp_"),
        ("chat-generate", False, "chatcmpl-"),
        ("chat-stream", True, "chatcmpl-"),
    ],
)
def test_ai_sdk_default_provider(node, live_key, mode, is_stream, prefix):
    """provider(model) calls /v1/responses, provider.chat(model) /v1/chat/completions."""
    organization, _ = live_key
    result = node("ai_sdk.mjs", mode=mode, model="plugsky-nano")
    assert result["text"].strip()
    assert result["finishReason"] == "stop"
    assert result["id"].startswith(prefix)
    record = _record_of(result)
    assert _ai_sdk_usage(result["usage"]) == _usage_of(record)
    assert record.is_stream is is_stream
    if is_stream:
        assert result["parts"] > 0
    _assert_billed(
        record, organization=organization, model="plugsky-nano", endpoint=ENDPOINTS[prefix]
    )


@pytest.mark.parametrize("mode", ["responses-tool", "chat-tool"])
def test_ai_sdk_tool_call(node, live_key, mode):
    organization, _ = live_key
    result = node("ai_sdk.mjs", mode=mode, model="plugsky-mini")
    [call] = result["calls"]
    assert call["toolName"] == "get_weather"
    assert set(call["input"]) == {"city"} and call["input"]["city"]
    assert result["finishReason"] == "tool-calls"
    record = _record_of(result)
    assert _ai_sdk_usage(result["usage"]) == _usage_of(record)
    _assert_billed(
        record,
        organization=organization,
        model="plugsky-mini",
        endpoint=ENDPOINTS["resp_" if mode.startswith("responses") else "chatcmpl-"],
    )


def test_openai_responses_function_call_output_in_a_follow_up_turn(node, live_key):
    """A function call, then its output in a second turn: through previous_response_id, and
    restated in full with store: false. Both turns are the same conversation, so they read
    the same prompt and, at temperature 0, answer the same text."""
    organization, _ = live_key
    result = node("openai_responses_tools.mjs", mode="function-call-output", model="plugsky-mini")
    first, chained, restated = result["first"], result["chained"], result["restated"]
    assert (first["status"], first["outputTypes"]) == ("completed", ["function_call"])
    [call] = first["calls"]
    assert call["name"] == "get_weather" and call["call_id"]
    assert set(json.loads(call["arguments"])) == {"city"}
    assert chained["previousResponseId"] == first["id"]
    assert result["chainedInputTypes"] == ["function_call_output"]  # its own input only
    for turn in (chained, restated):
        assert (turn["status"], turn["outputTypes"]) == ("completed", ["message"])
        assert turn["text"].strip()
    # The stored conversation is the restated one: the same prompt, token for token.
    assert chained["usage"]["input_tokens"] == restated["usage"]["input_tokens"]
    assert chained["text"] == restated["text"]
    for turn in (first, chained, restated):
        record = _record_of(turn)
        assert _openai_responses_usage(turn["usage"]) == _usage_of(record)
        _assert_billed(
            record, organization=organization, model="plugsky-mini", endpoint="responses"
        )
