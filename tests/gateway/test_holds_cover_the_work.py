"""Every hold covers the work it is held for: the ledger moves by exactly the priced usage.

Each call below is checked the same way: its UsageRecord's tokens times the catalog's prices is
what the balance lost, what the record and the ledger say, and at most what was held; nothing is
held afterwards; and the server logged no clamp ("above its hold", in billing) nor a count above
the meter's bounds ("above its bounds", in metering) for it. A charge clamped to a hold too small
would show up as a balance that moved by less than the priced usage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from apps.billing.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from apps.billing.pricing import call_cost_micros, cost_header_value
from apps.catalog.selectors import catalog_model
from apps.usage.models import UsageRecord
from tests.gateway.conversations import ANSWERED_CALL, WEATHER
from tests.sse import parse_events

pytestmark = pytest.mark.xdist_group("live")

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HELLO = [{"role": "user", "content": "Say hello."}]


def _balance(organization) -> int:  # type: ignore[no-untyped-def]
    return CreditAccount.objects.get(organization=organization).balance_micros


def _server_log(live_server_url: str) -> str:
    port = urlsplit(live_server_url).port
    return (ARTIFACTS / f"daphne-{port}.log").read_text()


def assert_billed_exactly(
    live_server_url: str, organization, request_id: str, before: int, model: str
) -> UsageRecord:  # type: ignore[no-untyped-def]
    record = UsageRecord.objects.get(request_id=request_id)
    priced = call_cost_micros(
        entry=catalog_model(model),
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
    )
    assert record.status == 200 and priced > 0
    assert record.cost_micros == priced
    assert before - _balance(organization) == priced
    debit = LedgerEntry.objects.get(usage_record=record)
    assert (debit.kind, debit.amount_micros) == (EntryKind.USAGE, -priced)
    hold = CreditHold.objects.get(request_id=request_id)
    assert hold.status == HoldStatus.SETTLED and hold.amount_micros >= priced
    assert CreditAccount.objects.get(organization=organization).held_micros == 0
    clamps = [
        line
        for line in _server_log(live_server_url).splitlines()
        if request_id in line and ("above its hold" in line or "above its bounds" in line)
    ]
    assert clamps == []
    return record


def _post(api, path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """(request id, the JSON body or the final usage of a stream)."""
    if not body.get("stream"):
        response = api.post(path, json=body)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        assert response.headers["x-plugsky-cost"] == cost_header_value(round(usage["cost"] * 1e6))
        return response.headers["x-request-id"], usage
    streamed = {**body, "stream_options": {"include_usage": True}}
    with api.stream("POST", path, json=streamed) as response:
        assert response.status_code == 200
        chunks, done = parse_events(response.read().decode())
        request_id = response.headers["x-request-id"]
    assert done
    return request_id, chunks[-1]["usage"]


def _check(live_server_url, api, live_key, path, body):  # type: ignore[no-untyped-def]
    organization, _ = live_key
    before = _balance(organization)
    request_id, usage = _post(api, path, body)
    record = assert_billed_exactly(live_server_url, organization, request_id, before, body["model"])
    assert (usage["prompt_tokens"], usage.get("completion_tokens", 0)) == (
        record.prompt_tokens,
        record.completion_tokens,
    )
    assert usage["cost"] == pytest.approx(record.cost_micros / 1_000_000)
    return record


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_chat_and_chat_with_n(live_server_url, api, live_key, stream, n):
    body = {"model": "plugsky-nano", "messages": HELLO, "max_tokens": 12, "n": n}
    record = _check(live_server_url, api, live_key, "/chat/completions", {**body, "stream": stream})
    assert record.completion_tokens > n  # every choice generated


@pytest.mark.parametrize("stream", [False, True])
def test_chat_with_tools_after_an_answered_call(live_server_url, api, live_key, stream):
    # The model may repeat the answered call, which makes the gateway answer a second time:
    # both passes share max_tokens, so the hold of one choice covers them (the retry's own
    # budget is tested with a scripted engine in test_settlement_failures).
    body = {
        "model": "plugsky-nano",
        "messages": ANSWERED_CALL,
        "tools": [WEATHER],
        "max_tokens": 40,
        "temperature": 0,
        "stream": stream,
    }
    record = _check(live_server_url, api, live_key, "/chat/completions", body)
    assert record.completion_tokens <= 40


def test_completions_with_prompts_that_fill_the_window_together(live_server_url, api, live_key):
    # Gemma reads digits one token each: three prompts of 1500 digits are ~4500 prompt tokens,
    # more than one 4096-token window, each prompt well inside one.
    digits = "".join(str(i % 10) for i in range(1500))
    body = {"model": "plugsky-base", "prompt": [digits, digits[::-1], digits[1:]], "max_tokens": 2}
    record = _check(live_server_url, api, live_key, "/completions", body)
    assert record.prompt_tokens > catalog_model("plugsky-base").context_length


@pytest.mark.parametrize("stream", [False, True])
def test_completions_with_several_prompts_and_n(live_server_url, api, live_key, stream):
    body = {
        "model": "plugsky-base",
        "prompt": ["One, two, three,", "Monday, Tuesday,"],
        "n": 2,
        "max_tokens": 5,
        "stream": stream,
    }
    record = _check(live_server_url, api, live_key, "/completions", body)
    assert record.completion_tokens == 2 * 2 * 5


@pytest.mark.parametrize(
    ("model", "inputs"),
    [
        # e5 counts "passage: ", <s> and </s> around each text: 5 tokens for "a".
        ("plugsky-embed", ["a"] * 40),
        ("plugsky-embed", ["Ünïcödé ✓ — ﬁne", "x"]),
        ("plugsky-embed-minilm", ["a"] * 40),
        ("plugsky-embed-minilm", [[101, 7592, 2088, 102], [7592]]),
    ],
)
def test_embeddings_on_each_model(live_server_url, api, live_key, model, inputs):
    _check(live_server_url, api, live_key, "/embeddings", {"model": model, "input": inputs})


def test_e5_counts_its_prefix_and_specials(live_server_url, api, live_key):
    record = _check(
        live_server_url, api, live_key, "/embeddings", {"model": "plugsky-embed", "input": ["a"]}
    )
    assert record.prompt_tokens == 5  # <s> ▁passage : ▁a </s>: more than the text's one byte


# --- Refused before anything is held ----------------------------------------------------------


def _refused(api, live_key, path, body):  # type: ignore[no-untyped-def]
    organization, _ = live_key
    before = _balance(organization)
    response = api.post(path, json=body)
    assert response.status_code == 400, response.text
    assert _balance(organization) == before
    assert not CreditHold.objects.filter(request_id=response.headers["x-request-id"]).exists()
    assert not UsageRecord.objects.filter(request_id=response.headers["x-request-id"]).exists()
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_chat_output_limit_above_the_window_is_a_400(api, live_key, param):
    body = {"model": "plugsky-nano", "messages": HELLO, param: 5000}
    error = _refused(api, live_key, "/chat/completions", body)
    assert (error["param"], error["code"]) == (param, "invalid_value")
    assert error["message"] == (
        f"{param} is too large: 5000. This model supports at most 4096 completion tokens, "
        "whereas you provided 5000."
    )


def test_completions_max_tokens_above_the_window_is_a_400(api, live_key):
    body = {"model": "plugsky-base", "prompt": "x", "max_tokens": 4097}
    error = _refused(api, live_key, "/completions", body)
    assert (error["param"], error["code"]) == ("max_tokens", "invalid_value")
    assert error["message"].startswith("max_tokens is too large: 4097.")


@pytest.mark.parametrize(("prompts", "n"), [(2049, 1), (257, 8)])
def test_completions_prompts_times_n_are_capped(api, live_key, prompts, n):
    body = {"model": "plugsky-base", "prompt": ["x"] * prompts, "n": n, "max_tokens": 1}
    error = _refused(api, live_key, "/completions", body)
    assert error["param"] == "prompt"
    assert "at most 2048 prompts times n" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"model": "plugsky-nano", "messages": HELLO, "max_tokens": 1}),
        ("/completions", {"model": "plugsky-base", "prompt": "x", "max_tokens": 1}),
        ("/embeddings", {"model": "plugsky-embed", "input": "x"}),
    ],
)
@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("u" * 257, "string should have at most 256 characters."),
        ("alice\x00", "Invalid 'user': the string must not contain NUL characters (\\u0000)."),
    ],
)
def test_a_user_that_cannot_be_recorded_is_a_400_on_every_endpoint(
    api, live_key, path, body, user, message
):
    error = _refused(api, live_key, path, {**body, "user": user})
    assert (error["param"], error["code"]) == ("user", "invalid_value")
    assert error["message"].endswith(message)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"model": "plugsky-nano", "messages": HELLO, "max_tokens": 1}),
        ("/embeddings", {"model": "plugsky-embed", "input": "x"}),
    ],
)
def test_a_user_of_256_characters_is_recorded_whole(api, live_key, path, body):
    response = api.post(path, json={**body, "user": "ü" * 256})
    assert response.status_code == 200, response.text
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert record.end_user == "ü" * 256
