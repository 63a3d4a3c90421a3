import pytest
from django.test import override_settings


@pytest.fixture(autouse=True)
def _one_window(monkeypatch):
    """Freeze the clock inside one window, so no test straddles a minute boundary."""
    monkeypatch.setattr("apps.gateway.ratelimit.time.time", lambda: 1_800_000_030.0)


def _get(client, raw_key):
    return client.get("/v1/models", headers={"Authorization": f"Bearer {raw_key}"})


def test_responses_carry_rate_limit_headers(client, api_key):
    _, raw_key = api_key
    with override_settings(RATE_LIMIT_REQUESTS_PER_MINUTE=50):
        first = _get(client, raw_key)
        second = _get(client, raw_key)
    assert first["x-ratelimit-limit-requests"] == "50"
    assert int(first["x-ratelimit-remaining-requests"]) == 49
    assert int(second["x-ratelimit-remaining-requests"]) == 48
    assert first["x-ratelimit-reset-requests"] == "30.000s"


def test_over_the_limit_is_a_429_with_retry_after(client, api_key, organization, owner):
    from apps.keys.services import api_key_create

    _, raw_key = api_key
    with override_settings(RATE_LIMIT_REQUESTS_PER_MINUTE=3):
        statuses = [_get(client, raw_key).status_code for _ in range(4)]
        limited = _get(client, raw_key)
        # The limit is per key: another key of the same organization still passes.
        _, other_key = api_key_create(organization=organization, created_by=owner, name="b")
        assert _get(client, other_key).status_code == 200
    assert statuses == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert limited.json()["error"] == {
        "message": limited.json()["error"]["message"],
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert "limit 3 per minute" in limited.json()["error"]["message"]
