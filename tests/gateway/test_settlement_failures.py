"""Every call that runs is billed and every hold is settled, also when things go wrong.

The serving pipeline runs in-process on a scripted engine (no model), so that faults can be
injected exactly where they hurt: a database that fails settlement once, always, or after its
COMMIT; a client that leaves while its hold is written; an engine or a bug failing after the
hold; a stream that outlives the hold's TTL; and the tool-call retry that must share its choice's
budget. Every test asserts the exact ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

from apps.billing import holds as billing_holds
from apps.billing.ledger import credit_adjust
from apps.billing.limits import spend_limit_set
from apps.billing.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from apps.billing.pricing import call_cost_micros
from apps.catalog.selectors import catalog_model
from apps.gateway import metering
from apps.gateway.serving import chat
from apps.gateway.serving.common import CallContext, Priced
from apps.protocol.errors import APIError
from apps.protocol.openai import ChatCompletionRequest
from apps.providers import local_engine, registry
from apps.providers.errors import ProviderError
from apps.providers.local_engine import chat as local_chat
from apps.usage.models import UsageRecord
from apps.usage.services import CallOutcome, usage_record_create
from tests.billing.helpers import new_request_id
from tests.gateway.conversations import ANSWERED_CALL, WEATHER

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "plugsky-mini"
HELLO = [{"role": "user", "content": "Say hello."}]
REPEATED_CALL = '{"name":"get_weather","arguments":{"city":"Paris"}}'


# --- A scripted engine ------------------------------------------------------------------------


def script(pieces: list[str], *, prompt: int = 30, finish: str = "stop") -> list[Any]:
    """The chunks llama.cpp streams for `pieces` of text, one token each."""
    chunks: list[Any] = []
    for count, piece in enumerate(pieces, start=1):
        chunks.append(
            {
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                "timings": {"prompt_n": prompt, "cache_n": 0, "predicted_n": count},
            }
        )
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": count}})
    return chunks


def _tokens(text: str, count: int) -> list[str]:
    """`text` as `count` tokens: one character each, the rest in the last."""
    return [*text[: count - 1], text[count - 1 :]]


class ScriptedEngine:
    """The engine client the local provider calls: plays one script per engine call, in order;
    an exception in a script is raised there."""

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts = list(scripts)
        self.bodies: list[dict[str, Any]] = []

    def is_available(self, entry: Any) -> bool:
        return True

    async def chat_stream(
        self, entry: Any, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        self.bodies.append(body)
        for item in self.scripts[len(self.bodies) - 1]:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            yield item


@pytest.fixture
def engine(monkeypatch) -> ScriptedEngine:  # type: ignore[no-untyped-def]
    scripted = ScriptedEngine()
    monkeypatch.setattr(registry, "local_engine", lambda: scripted)
    return scripted


@pytest.fixture
def fast_retries(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(metering, "_SETTLE_BACKOFF_S", (0.01, 0.02))


def _context(organization) -> CallContext:  # type: ignore[no-untyped-def]
    return CallContext(new_request_id(), organization_id=organization.pk, api_key_id=None)


async def _call(organization, **body: Any) -> tuple[CallContext, Any]:  # type: ignore[no-untyped-def]
    """(context, body or streamed chunks) of one chat call."""
    ctx = _context(organization)
    request = ChatCompletionRequest.model_validate({"model": MODEL, **body})
    result = await chat.create(request, ctx)
    if isinstance(result, Priced):
        return ctx, result.body
    return ctx, [chunk async for chunk in result]


@sync_to_async
def _balance(organization) -> int:  # type: ignore[no-untyped-def]
    return CreditAccount.objects.get(organization=organization).balance_micros


@sync_to_async
def _ledger_of(request_id: str) -> tuple[UsageRecord, CreditHold, list[int]]:
    record = UsageRecord.objects.get(request_id=request_id)
    hold = CreditHold.objects.get(request_id=request_id)
    debits = list(
        LedgerEntry.objects.filter(usage_record=record, kind=EntryKind.USAGE).values_list(
            "amount_micros", flat=True
        )
    )
    return record, hold, debits


async def assert_billed(organization, request_id: str, before: int, tokens: tuple[int, int]):  # type: ignore[no-untyped-def]
    """The call is recorded with `tokens`, charged exactly their price once, its hold closed."""
    record, hold, debits = await _ledger_of(request_id)
    priced = call_cost_micros(
        entry=catalog_model(MODEL), prompt_tokens=tokens[0], completion_tokens=tokens[1]
    )
    assert (record.prompt_tokens, record.completion_tokens) == tokens
    assert record.cost_micros == priced > 0
    assert debits == [-priced]
    assert before - await _balance(organization) == priced
    assert hold.status == HoldStatus.SETTLED and hold.amount_micros >= priced
    return record


def _no_clamp(caplog) -> None:  # type: ignore[no-untyped-def]
    assert "above its hold" not in caplog.text
    assert "above its bounds" not in caplog.text


# --- Holds cover the tool-call retry --------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_call_retry_gets_what_the_first_pass_left(
    organization, engine, caplog, stream
):
    engine.scripts = [script(_tokens(REPEATED_CALL, 21)), script(["Sunny."])]
    before = await _balance(organization)

    ctx, result = await _call(
        organization, messages=ANSWERED_CALL, tools=[WEATHER], max_tokens=40, stream=stream
    )

    assert [body["max_tokens"] for body in engine.bodies] == [40, 40 - 21]
    if stream:
        assert "".join(
            (c["choices"][0]["delta"].get("content") or "") for c in result if c["choices"]
        ) == ("Sunny.")
    else:
        assert result["choices"][0]["message"]["content"] == "Sunny."
        assert result["usage"]["completion_tokens"] == 21 + 1
    await assert_billed(organization, ctx.request_id, before, (30, 22))
    _no_clamp(caplog)


async def test_a_first_pass_that_used_the_whole_budget_is_not_answered_again(
    organization, engine, caplog
):
    engine.scripts = [script(_tokens(REPEATED_CALL, 40))]  # all of max_tokens=40
    before = await _balance(organization)

    ctx, body = await _call(organization, messages=ANSWERED_CALL, tools=[WEATHER], max_tokens=40)

    assert len(engine.bodies) == 1
    assert body["choices"][0]["finish_reason"] == "length"
    await assert_billed(organization, ctx.request_id, before, (30, 40))
    _no_clamp(caplog)


async def test_every_choice_is_capped_by_the_engine_at_what_was_held(organization, engine):
    engine.scripts = [script(["Hi"]), script(["Hello"])]
    await _call(organization, messages=HELLO, n=2)  # no max_tokens: the context window
    assert [body["max_tokens"] for body in engine.bodies] == [4096, 4096]


# --- Settlement that fails ------------------------------------------------------------------


async def test_settlement_that_fails_once_is_retried(
    organization, engine, monkeypatch, caplog, fast_retries
):
    real = metering.credit_settle
    calls: list[str] = []

    def failing_once(**kwargs: Any) -> UsageRecord:
        calls.append(kwargs["outcome"].request_id)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(metering, "credit_settle", failing_once)
    engine.scripts = [script(["Hel", "lo"])]
    before = await _balance(organization)

    ctx, chunks = await _call(
        organization, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )

    assert chunks[-1]["usage"]["completion_tokens"] == 2
    record = await assert_billed(organization, ctx.request_id, before, (30, 2))
    assert chunks[-1]["usage"]["cost"] == record.cost_micros / 1_000_000
    assert len(calls) == 2
    assert f"settlement of call {ctx.request_id} failed (attempt 1)" in caplog.text
    assert f"30 prompt + 2 completion tokens, cost {record.cost_micros} µ$" in caplog.text


async def test_a_settlement_whose_answer_was_lost_after_commit_charges_once(
    organization, engine, monkeypatch, fast_retries
):
    real = metering.credit_settle
    attempts = 0

    def committed_then_lost(**kwargs: Any) -> UsageRecord:
        nonlocal attempts
        attempts += 1
        record = real(**kwargs)
        if attempts == 1:
            raise OperationalError("connection lost after COMMIT")
        return record

    monkeypatch.setattr(metering, "credit_settle", committed_then_lost)
    engine.scripts = [script(["Hi", "!"])]
    before = await _balance(organization)

    ctx, body = await _call(organization, messages=HELLO)

    record = await assert_billed(organization, ctx.request_id, before, (30, 2))
    assert body["usage"]["cost"] == record.cost_micros / 1_000_000
    assert attempts == 2  # the second found the first's record (AlreadySettled)


async def test_a_database_that_keeps_failing_still_ends_the_stream(
    organization, engine, monkeypatch, caplog, fast_retries
):
    def always_failing(**kwargs: Any) -> UsageRecord:
        raise OperationalError("the database is down")

    monkeypatch.setattr(metering, "credit_settle", always_failing)
    monkeypatch.setattr(metering, "_SETTLE_WAIT_S", 0.2)
    monkeypatch.setattr(metering, "_SETTLE_GIVE_UP_S", 0.5)
    engine.scripts = [script(["Hi", "!"])]
    before = await _balance(organization)

    ctx, chunks = await _call(
        organization, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )

    # The content was delivered: the stream ends as usual, priced at what the call costs.
    priced = call_cost_micros(entry=catalog_model(MODEL), prompt_tokens=30, completion_tokens=2)
    assert chunks[-1]["usage"]["cost"] == priced / 1_000_000
    deadline = time.monotonic() + 5
    while "GIVING UP" not in caplog.text:  # it retried on in the background, then gave up
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert f"settlement of call {ctx.request_id} failed (attempt 1)" in caplog.text
    assert "GIVING UP, the call is unbilled" in caplog.text
    assert await _balance(organization) == before
    hold = await CreditHold.objects.aget(request_id=ctx.request_id)
    assert hold.status == HoldStatus.ACTIVE  # released when it expires, never lost from sight


async def test_settlement_cannot_fail_on_what_the_outcome_carries(organization):
    outcome = CallOutcome(
        request_id=new_request_id(),
        organization_id=organization.pk,
        api_key_id=None,
        endpoint="chat.completions",
        model=MODEL,
        prompt_tokens=1,
        completion_tokens=1,
        latency_ms=10**12,
        status=200,
        error_code="e\x00" * 40,
        end_user="a\x00b" + "u" * 300,
    )
    record = await sync_to_async(usage_record_create)(outcome=outcome)
    assert record.end_user == "ab" + "u" * 254
    assert record.error_code == "e" * 40
    assert record.latency_ms == 2**31 - 1


# --- No hold outlives its request -----------------------------------------------------------


async def test_a_client_leaving_while_its_hold_is_written_leaves_no_hold(organization, monkeypatch):
    real = billing_holds.credit_hold
    is_writing = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_hold(**kwargs: Any) -> CreditHold:
        loop.call_soon_threadsafe(is_writing.set)
        time.sleep(0.3)  # the client leaves meanwhile; the thread commits anyway
        return real(**kwargs)

    monkeypatch.setattr(metering, "credit_hold", slow_hold)
    request_id = new_request_id()
    opening = asyncio.ensure_future(
        metering.meter_open(
            request_id=request_id,
            organization_id=organization.pk,
            api_key_id=None,
            endpoint="chat.completions",
            entry=catalog_model(MODEL),
            max_prompt_tokens=100,
            max_completion_tokens=100,
            is_stream=True,
        )
    )
    await is_writing.wait()
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening

    hold = await CreditHold.objects.aget(request_id=request_id)
    assert hold.status == HoldStatus.SETTLED
    record = await UsageRecord.objects.aget(request_id=request_id)
    assert (record.status, record.is_client_disconnect, record.cost_micros) == (499, True, 0)
    account = await CreditAccount.objects.aget(organization=organization)
    assert (account.balance_micros, account.held_micros) == (5_000_000, 0)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_bug_after_the_hold_settles_the_call_unbilled(organization, engine, caplog, stream):
    engine.scripts = [[RuntimeError("a bug in the engine adapter")]]

    if stream:  # nothing was sent yet: the stream carries the error, then ends
        ctx, chunks = await _call(organization, messages=HELLO, stream=True)
        assert [chunk["error"]["type"] for chunk in chunks] == ["server_error"]
    else:
        ctx = _context(organization)
        request = ChatCompletionRequest.model_validate({"model": MODEL, "messages": HELLO})
        with pytest.raises(RuntimeError):
            await chat.create(request, ctx)

    record = await UsageRecord.objects.aget(request_id=ctx.request_id)
    assert (record.status, record.error_code, record.cost_micros) == (500, "internal_error", 0)
    account = await CreditAccount.objects.aget(organization=organization)
    assert (account.balance_micros, account.held_micros) == (5_000_000, 0)
    assert f"call {ctx.request_id} failed" in caplog.text


async def test_an_engine_error_mid_stream_ends_the_stream_and_the_hold(organization, engine):
    failure = ProviderError("the engine failed", status=503, code="model_unavailable")
    engine.scripts = [[*script(["Hi"])[:1], failure]]

    ctx, chunks = await _call(organization, messages=HELLO, stream=True)

    assert chunks[-1]["error"]["code"] == "model_unavailable"
    record = await UsageRecord.objects.aget(request_id=ctx.request_id)
    assert (record.status, record.cost_micros) == (503, 0)
    account = await CreditAccount.objects.aget(organization=organization)
    assert account.held_micros == 0


async def test_an_engine_refusal_before_output_is_its_own_status(organization, engine):
    refusal = ProviderError("too long", status=400, code="context_length_exceeded")
    engine.scripts = [[refusal]]

    with pytest.raises(APIError) as error:
        await _call(organization, messages=HELLO, stream=True)

    assert (error.value.status, error.value.code) == (400, "context_length_exceeded")
    account = await CreditAccount.objects.aget(organization=organization)
    assert account.held_micros == 0


async def test_a_logit_bias_the_engine_body_cannot_take_is_refused_before_any_hold(
    organization, engine
):
    with pytest.raises((ValueError, APIError)):  # "²" is a digit to str.isdigit, not to int()
        await _call(organization, messages=HELLO, logit_bias={"²": 1})
    assert not await CreditHold.objects.aexists()
    assert engine.bodies == []


async def test_a_long_stream_keeps_its_hold_alive(organization, engine, settings):
    settings.BILLING_HOLD_TTL_S = 3  # extended every second
    engine.scripts = [[*script(["Hi"])[:1], 2.5, *script(["Hi"])[1:]]]
    ctx = _context(organization)
    request = ChatCompletionRequest.model_validate({"model": MODEL, "messages": HELLO})
    calling = asyncio.ensure_future(chat.create(request, ctx))
    await asyncio.sleep(0.5)
    first = (await CreditHold.objects.aget(request_id=ctx.request_id)).expires_at

    await asyncio.sleep(1.5)
    extended = (await CreditHold.objects.aget(request_id=ctx.request_id)).expires_at
    assert (extended - first).total_seconds() >= 0.9
    # The stale-hold sweep at the first expiry finds nothing to release.
    assert await sync_to_async(billing_holds.holds_release_stale)(now=first) == 0

    await calling
    hold = await CreditHold.objects.aget(request_id=ctx.request_id)
    assert hold.status == HoldStatus.SETTLED


# --- Expensive preparation only with credit -------------------------------------------------


@sync_to_async
def _empty_credit(organization) -> None:  # type: ignore[no-untyped-def]
    credit_adjust(organization=organization, amount_micros=-5_000_000, description="test: empty")


async def test_no_credit_means_no_grammar_is_compiled(organization, engine, monkeypatch):
    await _empty_credit(organization)
    monkeypatch.setattr(local_engine, "tool_plan", _must_not_run)

    with pytest.raises(APIError) as refusal:
        await _call(organization, messages=ANSWERED_CALL, tools=[WEATHER])

    assert (refusal.value.status, refusal.value.code) == (429, "insufficient_quota")
    assert not await CreditHold.objects.aexists()


async def test_no_credit_means_no_image_is_fetched(organization, engine, monkeypatch):
    await _empty_credit(organization)
    monkeypatch.setattr(local_chat, "message_texts", _must_not_run)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Read it."}, image]}]

    with pytest.raises(APIError) as refusal:
        await _call(organization, model="plugsky-vision", messages=messages)

    assert refusal.value.code == "insufficient_quota"


async def test_a_spent_limit_means_no_schema_is_compiled(organization, engine, monkeypatch):
    await sync_to_async(spend_limit_set)(organization=organization, monthly_limit_micros=0)
    monkeypatch.setattr(local_chat, "json_answer", _must_not_run)

    with pytest.raises(APIError) as refusal:
        await _call(organization, messages=HELLO, response_format={"type": "json_object"})

    assert refusal.value.code == "spend_limit_exceeded"


async def test_a_plain_call_needs_no_extra_credit_check(organization, engine, monkeypatch):
    monkeypatch.setattr(metering, "credit_precheck", _must_not_run)
    engine.scripts = [script(["Hi"])]
    _, body = await _call(organization, messages=HELLO, max_tokens=5)
    assert body["choices"][0]["message"]["content"] == "Hi"


def _must_not_run(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("expensive preparation ran for a call that cannot be paid")


@pytest.fixture(autouse=True)
def _capture_logs(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
