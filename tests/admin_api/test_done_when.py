"""Issue 15's "done when", against a real server: a script holding only an admin key mints a key,
calls a model with it, reads back that call's exact usage and cost, and revokes the key."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from django.test import Client

from apps.accounts.selectors import personal_organization_for
from apps.billing.models import EntryKind, LedgerEntry
from apps.keys.services import admin_key_create
from apps.onboarding.services import user_create
from apps.usage.models import UsageRecord


@pytest.fixture
def admin_key(transactional_db):  # type: ignore[no-untyped-def]
    """A committed owner (with the trial credit) and their admin key: (user, organization, key)."""
    user = user_create(email="script@example.com", password="correct horse battery staple")
    organization = personal_organization_for(user=user)
    _, raw_key = admin_key_create(organization=organization, created_by=user, name="script")
    return user, organization, raw_key


def _chat(base_url: str, raw_key: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw_key}"},
        json={"model": "plugsky-nano", "max_tokens": 4,
              "messages": [{"role": "user", "content": "Say hi"}]},
        timeout=120,
    )  # fmt: skip


def _usage_of(admin: httpx.Client, key_id: str, day_start: int) -> list[dict[str, Any]]:
    """The key's completions usage today; waits (briefly) for the call's settlement to land."""
    query = {"start_time": day_start, "api_key_ids": key_id, "group_by": "api_key_id"}
    deadline = time.monotonic() + 10
    while True:
        results = admin.get("/usage/completions", params=query).json()["data"][0]["results"]
        if results or time.monotonic() > deadline:
            return list(results)
        time.sleep(0.2)


def test_a_script_with_only_an_admin_key(live_server_url, admin_key):  # type: ignore[no-untyped-def]
    user, organization, raw_admin_key = admin_key
    headers = {"Authorization": f"Bearer {raw_admin_key}"}
    admin = httpx.Client(base_url=f"{live_server_url}/v1/organization", headers=headers)
    now = datetime.now(UTC)
    day_start = int(datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp())

    minted = admin.post("/api_keys", json={"name": "ci job", "allowed_models": ["plugsky-nano"]})
    assert minted.status_code == 201, minted.text
    key_id, raw_key = minted.json()["id"], minted.json()["value"]
    assert _chat(live_server_url, raw_admin_key).status_code == 401  # admin keys: not for /v1

    answer = _chat(live_server_url, raw_key)
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]

    results = _usage_of(admin, key_id, day_start)
    record = UsageRecord.objects.get(organization=organization)
    seen = [
        (r["api_key_id"], r["input_tokens"], r["output_tokens"], r["num_model_requests"])
        for r in results
    ]
    assert seen == [(key_id, usage["prompt_tokens"], usage["completion_tokens"], 1)]
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"], usage["completion_tokens"],
    )  # fmt: skip

    costs = admin.get("/costs", params={"start_time": day_start, "group_by": "api_key_id"}).json()
    [result] = costs["data"][0]["results"]
    debit = LedgerEntry.objects.get(organization=organization, kind=EntryKind.USAGE)
    assert record.cost_micros > 0 and -debit.amount_micros == record.cost_micros
    assert result["api_key_id"] == key_id
    assert round(result["amount"]["value"] * 1_000_000) == record.cost_micros

    # The same numbers in the dashboard.
    dashboard = Client()
    dashboard.force_login(user)
    series = dashboard.get(f"/dashboard/{organization.pk}/usage/").context["series"]
    assert (series.requests, series.total_cost_micros, series.total_tokens) == (
        1, record.cost_micros, usage["prompt_tokens"] + usage["completion_tokens"],
    )  # fmt: skip

    revoked = admin.delete(f"/api_keys/{key_id}")
    assert revoked.json() == {
        "object": "organization.api_key.deleted",
        "id": key_id,
        "deleted": True,
    }
    refused = _chat(live_server_url, raw_key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
