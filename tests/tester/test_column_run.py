"""A tester column runs the API's own pipeline: streamed, metered, billed, marked as tester."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from apps.billing.models import CreditAccount, EntryKind, LedgerEntry
from apps.tester import services
from apps.tester.services import Column, column_run, run_cancel
from apps.usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def events(monkeypatch) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    sent: list[dict[str, Any]] = []

    async def record(self, message: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
        assert message["type"] == "tester.event" and message["run_id"] == "run1"
        sent.append({key: value for key, value in message.items() if key not in {"type", "run_id"}})

    monkeypatch.setattr(services._Outbox, "_deliver", record)
    return sent


def _column(organization, user, **body: Any) -> Column:  # type: ignore[no-untyped-def]
    request = {
        "model": "plugsky-nano",
        "messages": [{"role": "user", "content": "Count from one to five."}],
        "max_tokens": 16,
        "temperature": 0,
        **body,
    }
    return Column("run1", 0, organization.pk, user.pk, request, reply_channel="specific.test!1")


async def test_tokens_stream_and_the_call_is_billed_as_tester_traffic(organization, owner, events):
    await column_run(_column(organization, owner))

    kinds = [event["event"] for event in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "done"
    tokens = [event["text"] for event in events if event["event"] == "token"]
    assert len(tokens) >= 2  # token by token, not one piece
    done = events[-1]
    record = await UsageRecord.objects.aget(request_id=done["request_id"])
    assert record.is_tester and record.api_key_id is None and record.is_stream
    assert record.end_user == "owner@example.com"
    assert (done["prompt_tokens"], done["completion_tokens"]) == (
        record.prompt_tokens,
        record.completion_tokens,
    )
    assert done["cost_micros"] == record.cost_micros > 0
    assert done["latency_ms"] == record.latency_ms
    debit = await LedgerEntry.objects.aget(usage_record=record)
    assert (debit.kind, debit.amount_micros) == (EntryKind.USAGE, -record.cost_micros)
    account = await CreditAccount.objects.aget(organization=organization)
    assert account.balance_micros == 5_000_000 - record.cost_micros
    assert account.held_micros == 0


async def test_without_credit_the_column_shows_the_quota_error(organization, owner, events):
    from apps.billing.ledger import credit_adjust

    await sync_to_async(credit_adjust)(
        organization=organization, amount_micros=-5_000_000, description="spent"
    )
    await column_run(_column(organization, owner))
    assert [event["event"] for event in events] == ["error"]
    assert events[0]["status"] == 429 and "quota" in events[0]["message"]
    assert not await UsageRecord.objects.aexists()


async def test_a_stopped_column_ends_early_and_is_billed_for_what_ran(organization, owner, events):
    await sync_to_async(run_cancel)(run_id="run1")
    await column_run(_column(organization, owner, max_tokens=1500, messages=[
        {"role": "user", "content": "Write a very long story about the sea."}
    ]))  # fmt: skip
    done = events[-1]
    assert done["event"] == "done" and done["finish_reason"] == "cancelled"
    record = await UsageRecord.objects.aget(request_id=done["request_id"])
    assert record.status == 499 and record.is_client_disconnect
    assert record.completion_tokens < 1500
    await sync_to_async(cache.clear)()


async def test_an_outsider_cannot_run_a_column_for_the_organization(organization, outsider, events):
    await column_run(_column(organization, outsider))
    assert [event["event"] for event in events] == ["error"]
    assert not await UsageRecord.objects.aexists()
