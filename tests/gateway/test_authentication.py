from datetime import timedelta

import pytest
from django.utils import timezone

from apps.keys.models import APIKey
from apps.keys.services import api_key_create, api_key_revoke


def _get_models(client, authorization=None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.get("/v1/models", headers=headers)


def _assert_invalid_api_key(response, message_start):
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["param"] is None
    assert body["error"]["message"].startswith(message_start)


def test_valid_key_is_accepted(client, api_key):
    _, raw_key = api_key
    assert _get_models(client, f"Bearer {raw_key}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token sk-live-abc"],
)
def test_missing_or_malformed_header(client, db, authorization):
    _assert_invalid_api_key(_get_models(client, authorization), "You didn't provide an API key")


@pytest.mark.parametrize("raw_key", ["sk-live-short", "sk-proj-" + "a" * 43, "not-a-key"])
def test_malformed_key(client, db, raw_key):
    _assert_invalid_api_key(_get_models(client, f"Bearer {raw_key}"), "Incorrect API key provided")


def test_unknown_key(client, db):
    raw_key = "sk-live-" + "A" * 43
    response = _get_models(client, f"Bearer {raw_key}")
    _assert_invalid_api_key(response, "Incorrect API key provided")
    assert raw_key not in response.content.decode()


def test_revoked_key_fails_on_the_very_next_request(client, api_key, owner):
    row, raw_key = api_key
    assert _get_models(client, f"Bearer {raw_key}").status_code == 200  # identity now cached
    api_key_revoke(api_key=row, revoked_by=owner)
    _assert_invalid_api_key(
        _get_models(client, f"Bearer {raw_key}"), "This API key has been revoked"
    )


def test_expired_key(client, organization, owner):
    _, raw_key = api_key_create(
        organization=organization,
        created_by=owner,
        name="old",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    _assert_invalid_api_key(_get_models(client, f"Bearer {raw_key}"), "This API key has expired")


def test_key_expiring_while_cached_stops_working(client, organization, owner, monkeypatch):
    _, raw_key = api_key_create(
        organization=organization,
        created_by=owner,
        name="soon",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert _get_models(client, f"Bearer {raw_key}").status_code == 200
    later = timezone.now() + timedelta(minutes=6)
    monkeypatch.setattr("apps.keys.authentication.timezone.now", lambda: later)
    _assert_invalid_api_key(_get_models(client, f"Bearer {raw_key}"), "This API key has expired")


def test_last_used_is_recorded_without_a_write_per_request(
    client, api_key, django_assert_max_num_queries
):
    row, raw_key = api_key
    assert row.last_used_at is None
    _get_models(client, f"Bearer {raw_key}")
    first_use = APIKey.objects.get(pk=row.pk).last_used_at
    assert first_use is not None
    # Identity cached, last use recorded this minute: further requests touch no database row.
    with django_assert_max_num_queries(0):
        for _ in range(5):
            assert _get_models(client, f"Bearer {raw_key}").status_code == 200
    assert APIKey.objects.get(pk=row.pk).last_used_at == first_use


def _spy_on_db_call(monkeypatch):
    from plugsky_site.db import db_call

    calls = []

    async def spy(fn, /, *args, **kwargs):
        calls.append(fn.__name__)
        return await db_call(fn, *args, **kwargs)

    monkeypatch.setattr("apps.keys.authentication.db_call", spy)
    return calls


async def test_under_asgi_the_lookup_hands_its_connection_back_at_once(live_key, monkeypatch):
    from apps.keys.authentication import authenticate_async

    organization, raw_key = live_key
    calls = _spy_on_db_call(monkeypatch)
    identity = await authenticate_async(f"Bearer {raw_key}")
    assert identity.organization_id == organization.pk
    assert calls == ["_loaded_identity", "_mark_used"]
    # Cached and marked this window: the next call stays on the loop, no database work at all.
    assert await authenticate_async(f"Bearer {raw_key}") == identity
    assert calls == ["_loaded_identity", "_mark_used"]


def test_under_the_test_client_the_lookup_sees_the_test_transaction(client, api_key):
    _, raw_key = api_key  # written in the test's transaction, visible only on its connection
    assert _get_models(client, f"Bearer {raw_key}").status_code == 200
