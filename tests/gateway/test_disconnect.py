"""A client that goes away mid-stream: generation stops and exactly what ran is recorded."""

import time

import httpx
import pytest

from apps.billing.models import CreditAccount, CreditHold, HoldStatus
from apps.usage.models import UsageRecord

pytestmark = pytest.mark.xdist_group("live")


def _wait_for_record(request_id: str, timeout_s: float = 20) -> UsageRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = UsageRecord.objects.filter(request_id=request_id).first()
        if record is not None:
            return record
        time.sleep(0.1)
    raise AssertionError(f"no UsageRecord for {request_id}")


def test_disconnect_mid_stream_stops_generation_and_records_what_ran(live_server_url, live_key):
    organization, raw_key = live_key
    body = {
        "model": "plugsky-nano",
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 2000,
        "stream": True,
    }
    client = httpx.Client(timeout=60, headers={"Authorization": f"Bearer {raw_key}"})
    with client.stream("POST", f"{live_server_url}/v1/chat/completions", json=body) as response:
        request_id = response.headers["x-request-id"]
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received >= 10:
                break
    client.close()  # drop the connection mid-stream

    record = _wait_for_record(request_id)
    assert record.is_client_disconnect
    assert record.status == 499
    # Generation stopped soon after the client left, far short of max_tokens.
    assert 8 <= record.completion_tokens < 400
    assert record.prompt_tokens > 0
    # Its hold was settled with it, not left to expire.
    assert CreditHold.objects.get(request_id=request_id).status == HoldStatus.SETTLED
    assert CreditAccount.objects.get(organization=organization).held_micros == 0
