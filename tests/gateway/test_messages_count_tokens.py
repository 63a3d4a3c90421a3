"""POST /v1/messages/count_tokens: the exact input tokens the same Messages call is billed for."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from apps.billing.models import CreditAccount
from apps.catalog import selectors
from apps.usage.models import UsageRecord

pytestmark = pytest.mark.xdist_group("live")

VERSION = {"anthropic-version": "2023-06-01"}
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# System blocks, tools, and a conversation with a tool call and its result: everything the
# rendered prompt is made of.
WITH_TOOLS = {
    "model": "plugsky-mini",
    "system": [{"type": "text", "text": "You are a weather assistant."}],
    "tools": [WEATHER],
    "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C, sunny"},
                {"type": "text", "text": "And should I take an umbrella?"},
            ],
        },
    ],
}
MULTI_TURN = {
    "model": "plugsky-nano",
    "system": "You are terse.",
    "messages": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": [{"type": "text", "text": "Another one, in français ✨"}]},
    ],
}


def _balance(organization) -> int:
    return CreditAccount.objects.get(organization=organization).balance_micros


def _count(api, body: dict[str, Any], **headers: str):
    return api.post("/messages/count_tokens", json=body, headers={**VERSION, **headers})


def _billed_input(api, body: dict[str, Any]) -> tuple[int, UsageRecord]:
    """A real /v1/messages call's whole input (uncached + cache read) and its usage record."""
    response = api.post("/messages", json={**body, "max_tokens": 3}, headers=VERSION)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    return usage["input_tokens"] + usage["cache_read_input_tokens"], record


@pytest.mark.parametrize("body", [WITH_TOOLS, MULTI_TURN], ids=["tools", "multi-turn"])
def test_the_count_is_the_input_a_real_call_is_billed_for(api, live_key, body):
    organization, _ = live_key
    before = _balance(organization)
    response = _count(api, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    counted = response.json()
    assert list(counted) == ["input_tokens"]
    # Counting is free: nothing debited, nothing recorded.
    assert _balance(organization) == before
    assert not UsageRecord.objects.filter(request_id=response.headers["x-request-id"]).exists()
    billed, record = _billed_input(api, body)
    assert counted["input_tokens"] == billed == record.prompt_tokens > 0


def test_an_image_counts_as_what_the_model_reads_in_it(api):
    from tests.providers.test_vision_reader import invoice_png

    image = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(invoice_png()).decode(),
        },
    }
    content = [{"type": "text", "text": "What is the total?"}, image]
    body = {"model": "plugsky-vision", "messages": [{"role": "user", "content": content}]}
    counted = _count(api, body)
    assert counted.status_code == 200, counted.text
    text_only = _count(api, {**body, "model": "plugsky-mini", "messages": [
        {"role": "user", "content": content[:1]}]})  # fmt: skip
    # The image's reading (its text, size and colours) is part of the prompt.
    assert counted.json()["input_tokens"] > text_only.json()["input_tokens"] + 10
    billed, _ = _billed_input(api, body)
    assert counted.json() == {"input_tokens": billed}


def test_a_bad_key_is_an_authentication_error_in_anthropics_envelope(api):
    response = _count(api, MULTI_TURN, **{"x-api-key": "sk-live-wrong", "Authorization": ""})
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


def test_an_unknown_model_is_not_found_in_anthropics_envelope(api):
    response = _count(api, {**MULTI_TURN, "model": "no-such-model"})
    assert response.status_code == 404
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "The model `no-such-model` does not exist or you do not have access to it.",
        },
        "request_id": response.headers["x-request-id"],
    }


def test_a_request_a_real_call_would_refuse_is_refused_alike(api):
    orphan = {
        "model": "plugsky-nano",
        "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_none", "content": "42"}]}],
    }  # fmt: skip
    counted = _count(api, orphan)
    created = api.post("/messages", json={**orphan, "max_tokens": 3}, headers=VERSION)
    assert counted.status_code == created.status_code == 400
    assert counted.json()["error"] == created.json()["error"]
    assert counted.json()["error"]["type"] == "invalid_request_error"


def test_the_anthropic_sdk_counts_what_it_is_then_billed(live_server_url, live_key):
    _, raw_key = live_key
    client = anthropic.Anthropic(base_url=live_server_url, api_key=raw_key, max_retries=0)
    request: dict[str, Any] = {
        "model": "plugsky-mini",
        "system": "You are a weather assistant.",
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Is it raining in Oslo?"}],
    }
    counted = client.messages.count_tokens(**request)
    assert isinstance(counted, anthropic.types.MessageTokensCount)
    message = client.messages.create(max_tokens=3, **request)
    usage = message.usage
    assert counted.input_tokens == usage.input_tokens + (usage.cache_read_input_tokens or 0)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(**{**request, "model": "no-such-model"})


# --- A model served upstream only ---------------------------------------------------------------


@pytest.fixture
def anthropic_route(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Anthropic's models configured, at a loopback address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    selectors.clear_cache()
    yield
    monkeypatch.undo()
    selectors.clear_cache()


async def test_an_upstream_only_model_is_counted_by_its_vendor_or_not_at_all(
    async_client, live_key, anthropic_route
):
    # Counting on the vendors' own routes: tests/gateway/upstream/test_messages_on_vendor_routes.
    # Here the vendor cannot be reached: a server error, never a count made up instead.
    _, raw_key = live_key
    body = {**MULTI_TURN, "model": "claude-haiku-4-5"}
    response = await async_client.post(
        "/v1/messages/count_tokens",
        data=json.dumps(body),
        content_type="application/json",
        headers={"x-api-key": raw_key, **VERSION},
    )
    assert response.status_code in (502, 503)
    error = json.loads(response.content)
    assert error["type"] == "error" and error["error"]["type"] in ("api_error", "overloaded_error")
