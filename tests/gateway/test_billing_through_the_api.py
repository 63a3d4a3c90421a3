"""A call through the API moves the organization's balance by exactly its priced cost."""

import time

import pytest

from apps.billing.ledger import credit_adjust
from apps.billing.models import CreditAccount, LedgerEntry
from apps.billing.pricing import call_cost_micros, cost_header_value
from apps.catalog.selectors import catalog_model
from apps.usage.models import UsageRecord
from tests.sse import parse_events

pytestmark = pytest.mark.xdist_group("live")

HELLO = [{"role": "user", "content": "Say hello."}]


def _balance(organization) -> int:
    return CreditAccount.objects.get(organization=organization).balance_micros


def test_chat_call_debits_exactly_its_cost(api, live_key):
    organization, _ = live_key
    before = _balance(organization)
    response = api.post(
        "/chat/completions",
        json={"model": "plugsky-mini", "messages": HELLO, "max_tokens": 8, "temperature": 0},
    )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    expected = call_cost_micros(
        entry=catalog_model("plugsky-mini"),
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )
    assert expected > 0
    assert response.headers["x-plugsky-cost"] == cost_header_value(expected)
    assert before - _balance(organization) == expected
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert record.cost_micros == expected
    assert CreditAccount.objects.get(organization=organization).held_micros == 0


def test_embedding_call_debits_input_tokens_only(api, live_key):
    organization, _ = live_key
    before = _balance(organization)
    response = api.post("/embeddings", json={"model": "plugsky-embed", "input": ["a", "b c"]})
    tokens = response.json()["usage"]["prompt_tokens"]
    expected = call_cost_micros(
        entry=catalog_model("plugsky-embed"), prompt_tokens=tokens, completion_tokens=0
    )
    assert before - _balance(organization) == expected


def test_insufficient_credit_is_a_429_and_costs_nothing(api, live_key):
    organization, _ = live_key
    credit_adjust(organization=organization, amount_micros=-_balance(organization) + 1,
                  description="test: almost empty")  # fmt: skip
    before = _balance(organization)
    response = api.post(
        "/chat/completions", json={"model": "plugsky-nano", "messages": HELLO, "max_tokens": 50}
    )
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
    assert "credit" in error["message"].lower()
    assert _balance(organization) == before


def test_stream_disconnect_is_billed_to_the_token(live_server_url, live_key):
    import httpx

    organization, raw_key = live_key
    before = _balance(organization)
    body = {
        "model": "plugsky-nano",
        "messages": [{"role": "user", "content": "Tell a very long story."}],
        "max_tokens": 1500,
        "stream": True,
    }
    with (
        httpx.Client(timeout=60, headers={"Authorization": f"Bearer {raw_key}"}) as client,
        client.stream("POST", f"{live_server_url}/v1/chat/completions", json=body) as response,
    ):
        request_id = response.headers["x-request-id"]
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events >= 6:
                break
    deadline = time.monotonic() + 20
    while not UsageRecord.objects.filter(request_id=request_id).exists():
        assert time.monotonic() < deadline, "the disconnected call was never settled"
        time.sleep(0.1)
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.is_client_disconnect and 0 < record.completion_tokens < 1500
    expected = call_cost_micros(
        entry=catalog_model("plugsky-nano"),
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
    )
    assert record.cost_micros == expected
    assert before - _balance(organization) == expected
    debit = LedgerEntry.objects.get(organization=organization, kind="usage")
    assert debit.amount_micros == -expected


def test_streamed_usage_chunk_carries_the_cost(api, live_key):
    with api.stream(
        "POST",
        "/chat/completions",
        json={"model": "plugsky-nano", "messages": HELLO, "max_tokens": 4, "stream": True,
              "stream_options": {"include_usage": True}},
    ) as response:  # fmt: skip
        chunks, _ = parse_events(response.read().decode())
    usage = chunks[-1]["usage"]
    expected = call_cost_micros(
        entry=catalog_model("plugsky-nano"),
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )
    assert usage["cost"] == pytest.approx(expected / 1_000_000)
