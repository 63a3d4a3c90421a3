"""The usage tests' known traffic: records dated to the second around one UTC day."""

from datetime import UTC, datetime, timedelta

import pytest

from apps.accounts.selectors import personal_organization_for
from apps.keys.services import api_key_create
from apps.usage.models import UsageRecord
from apps.usage.services import CallOutcome, usage_record_create
from tests.factories import make_user

MIDNIGHT = datetime(2026, 3, 14, tzinfo=UTC)
NOON = MIDNIGHT + timedelta(hours=12)


def record(number, organization, key, model, at, prompt, completion, cost, *,  # type: ignore[no-untyped-def]
           endpoint="chat.completions", user="", cached=0):  # fmt: skip
    created = usage_record_create(
        outcome=CallOutcome(
            request_id=f"req_rollup_{number}",
            organization_id=organization.pk,
            api_key_id=key.pk if key else None,
            endpoint=endpoint,
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            latency_ms=1,
            status=200,
            end_user=user,
        ),
        cost_micros=cost,
    )
    UsageRecord.objects.filter(pk=created.pk).update(created_at=at)


@pytest.fixture
def traffic(organization, owner):  # type: ignore[no-untyped-def]
    key, _ = api_key_create(organization=organization, created_by=owner, name="a")
    other_key, _ = api_key_create(organization=organization, created_by=owner, name="b")
    other_org = personal_organization_for(user=make_user("other@example.com"))
    second = timedelta(seconds=1)
    calls = [
        # Two calls in the same minute and group, one of another user in it, one a minute later.
        (organization, key, "plugsky-nano", MIDNIGHT + 5 * second, 10, 20, 2, {"cached": 4}),
        (organization, key, "plugsky-nano", MIDNIGHT + 59 * second, 5, 5, 1, {}),
        (organization, key, "plugsky-nano", MIDNIGHT + 30 * second, 5, 5, 1, {"user": "ann"}),
        (organization, key, "plugsky-nano", MIDNIGHT + 60 * second, 1, 2, 3, {}),
        (organization, key, "plugsky-embed", MIDNIGHT + 6 * second, 100, 0, 0,
         {"endpoint": "embeddings"}),
        (organization, other_key, "plugsky-nano", MIDNIGHT + timedelta(hours=2), 7, 3, 1, {}),
        (organization, None, "whisper", MIDNIGHT + timedelta(hours=3), 12, 0, 1,
         {"endpoint": "audio.transcriptions"}),
        (other_org, None, "plugsky-nano", MIDNIGHT + 5 * second, 1_000, 0, 10, {}),
        # The next day, and the afternoon (after the watermark of the tests below).
        (organization, key, "plugsky-nano", MIDNIGHT + timedelta(days=1), 99, 99, 99, {}),
        (organization, key, "plugsky-nano", NOON + timedelta(hours=1), 9, 9, 9, {}),
    ]  # fmt: skip
    for number, (org, api_key, model, at, prompt, completion, cost, extra) in enumerate(calls):
        record(number, org, api_key, model, at, prompt, completion, cost, **extra)
    return organization, key, other_key, other_org
