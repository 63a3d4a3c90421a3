"""The gateway's hook: meter_open holds credit, meter_close settles it (driven synchronously)."""

import asyncio

import pytest
from asgiref.sync import async_to_sync

from apps.billing.limits import spend_limit_set
from apps.billing.models import CreditHold, EntryKind, LedgerEntry
from apps.billing.pricing import cost_header_value
from apps.gateway.metering import meter_close, meter_open
from apps.protocol.errors import APIError
from apps.providers.base import Usage
from apps.usage.models import UsageRecord
from tests.billing.helpers import account, new_request_id, set_balance

# The meter's database work runs in worker threads (plugsky_site.db.db_call), on connections
# of their own: the test's data must be committed for them to see it.
pytestmark = pytest.mark.django_db(transaction=True)


def open_meter(organization, entry, *, api_key_id=None, prompt=100, max_completion=400):  # type: ignore[no-untyped-def]
    return async_to_sync(meter_open)(
        request_id=new_request_id(),
        organization_id=organization.pk,
        api_key_id=api_key_id,
        endpoint="chat.completions",
        entry=entry,
        max_prompt_tokens=prompt,
        max_completion_tokens=max_completion,
        is_stream=True,
    )


def close_meter(meter, *, prompt_tokens, completion_tokens, **outcome):  # type: ignore[no-untyped-def]
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    return async_to_sync(meter_close)(meter, usage=usage, **outcome)


def test_a_completed_call_is_billed_exactly(organization, priced_entry):
    meter = open_meter(organization, priced_entry)
    assert meter.hold.amount_micros == 100 + 2 * 400
    assert account(organization).held_micros == 900

    cost = close_meter(meter, prompt_tokens=100, completion_tokens=123, status=200)

    assert cost == 100 + 2 * 123
    assert cost_header_value(cost) == "0.000346"
    assert account(organization).balance_micros == 5_000_000 - 346
    assert account(organization).held_micros == 0
    record = UsageRecord.objects.get(request_id=meter.request_id)
    assert (record.prompt_tokens, record.completion_tokens, record.cost_micros) == (100, 123, 346)
    assert LedgerEntry.objects.get(usage_record=record).amount_micros == -346


def test_a_client_disconnect_mid_stream_is_billed_to_the_token(organization, priced_entry):
    meter = open_meter(organization, priced_entry, prompt=100, max_completion=400)

    cost = close_meter(
        meter, prompt_tokens=100, completion_tokens=37, status=200, client_disconnected=True
    )

    assert cost == 174
    debit = LedgerEntry.objects.get(kind=EntryKind.USAGE)
    assert debit.amount_micros == -174
    assert debit.usage_record.is_client_disconnect
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        4_999_826,
        0,
    )


def test_an_upstream_failure_before_output_is_recorded_not_billed(organization, priced_entry):
    meter = open_meter(organization, priced_entry)

    cost = close_meter(
        meter, prompt_tokens=100, completion_tokens=0, status=502, error_code="upstream_error"
    )

    assert cost == 0
    record = UsageRecord.objects.get(request_id=meter.request_id)
    assert (record.status, record.error_code, record.cost_micros) == (502, "upstream_error", 0)
    assert not LedgerEntry.objects.filter(kind=EntryKind.USAGE).exists()
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        5_000_000,
        0,
    )


def test_a_client_error_is_not_billed(organization, priced_entry):
    meter = open_meter(organization, priced_entry)
    assert close_meter(meter, prompt_tokens=100, completion_tokens=0, status=400) == 0
    assert account(organization).balance_micros == 5_000_000


def test_a_meter_closes_once(organization, priced_entry):
    meter = open_meter(organization, priced_entry)
    close_meter(meter, prompt_tokens=1, completion_tokens=1, status=200)
    with pytest.raises(RuntimeError):
        close_meter(meter, prompt_tokens=1, completion_tokens=1, status=200)
    assert account(organization).balance_micros == 5_000_000 - 3


def test_insufficient_credit_is_openais_insufficient_quota(organization, priced_entry):
    set_balance(organization, 899)
    with pytest.raises(APIError) as refusal:
        open_meter(organization, priced_entry, prompt=100, max_completion=400)

    response = refusal.value.response()
    assert response.status_code == 429
    assert response["x-should-retry"] == "false"
    assert refusal.value.body() == {
        "error": {
            "message": "You exceeded your current quota: this request needs up to $0.0009 of "
            "credit and your organization has $0.000899 available. Add credit on the Billing "
            "page of your Plugsky dashboard.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    assert account(organization).held_micros == 0
    assert not CreditHold.objects.exists()


def test_an_organization_spend_limit_gives_a_429_naming_it(organization, priced_entry):
    spend_limit_set(organization=organization, monthly_limit_micros=1_000)
    open_meter(organization, priced_entry)  # holds 900 of the 1_000
    with pytest.raises(APIError) as refusal:
        open_meter(organization, priced_entry)
    assert refusal.value.status == 429
    assert (refusal.value.type, refusal.value.code) == (
        "insufficient_quota",
        "spend_limit_exceeded",
    )
    assert refusal.value.message == (
        "This request would exceed the monthly spend limit of your organization: $0.001 per "
        "month, $0.0009 already spent or reserved this month (UTC). Raise the limit in your "
        "Plugsky dashboard or wait for the next month."
    )
    assert account(organization).held_micros == 900


def test_a_key_spend_limit_gives_a_429_naming_the_key(organization, api_key, priced_entry):
    key, _ = api_key
    spend_limit_set(organization=organization, api_key=key, monthly_limit_micros=500)
    with pytest.raises(APIError) as refusal:
        open_meter(organization, priced_entry, api_key_id=key.pk)
    assert refusal.value.code == "spend_limit_exceeded"
    assert refusal.value.message.startswith(
        "This request would exceed the monthly spend limit of this API key: $0.0005 per month, "
        "$0.00 already spent"
    )
    open_meter(organization, priced_entry, api_key_id=None)  # other traffic is not limited
    assert account(organization).held_micros == 900


def test_a_count_above_the_meters_bounds_is_logged(organization, priced_entry, caplog):
    meter = open_meter(organization, priced_entry, prompt=10, max_completion=10)
    # 11 + 2 * 9 = 29 µ$ fits the hold of 30, but the prompt bound was wrong: said all the same.
    assert close_meter(meter, prompt_tokens=11, completion_tokens=9, status=200) == 29
    assert f"call {meter.request_id} (chat.completions on test-priced) used 11" in caplog.text
    assert "above its bounds of 10 + 10" in caplog.text
    assert "above its hold" not in caplog.text


async def test_a_closed_meter_stops_keeping_its_hold_alive(organization, priced_entry):
    meter = await meter_open(
        request_id=new_request_id(),
        organization_id=organization.pk,
        api_key_id=None,
        endpoint="chat.completions",
        entry=priced_entry,
        max_prompt_tokens=1,
        max_completion_tokens=1,
        is_stream=False,
    )
    assert meter.keeper is not None and not meter.keeper.done()
    await meter_close(meter, usage=Usage(prompt_tokens=1, completion_tokens=1), status=200)
    await asyncio.sleep(0)
    assert meter.keeper.cancelled()
