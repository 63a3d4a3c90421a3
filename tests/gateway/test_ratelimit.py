import pytest
from asgiref.sync import async_to_sync
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


def _requests_headers(remaining, limit=600):
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": "30.000s",
    }


def _tokens_headers(remaining, limit):
    return {
        "x-ratelimit-limit-tokens": str(limit),
        "x-ratelimit-remaining-tokens": str(remaining),
        "x-ratelimit-reset-tokens": "30.000s",
    }


def _rate_limit_headers(response):
    return {name: value for name, value in response.items() if name.startswith("x-ratelimit-")}


def test_errors_after_authentication_carry_the_request_headers(client, api_key):
    _, raw_key = api_key
    headers = {"Authorization": f"Bearer {raw_key}"}
    not_found = client.get("/v1/models/nope", headers=headers)
    bad_body = client.post(
        "/v1/chat/completions", data=b"{not json", content_type="application/json", headers=headers
    )
    assert not_found.status_code == 404
    assert _rate_limit_headers(not_found) == _requests_headers(599)
    assert bad_body.status_code == 400
    assert _rate_limit_headers(bad_body) == _requests_headers(598)


def test_a_refused_key_carries_no_rate_limit_headers(client, db):
    response = client.get("/v1/models", headers={"Authorization": "Bearer sk-live-" + "A" * 43})
    assert response.status_code == 401
    assert _rate_limit_headers(response) == {}


def _take_tokens(client, raw_key, tokens, fail=""):
    return client.post(
        f"/v1/_test/tokens?n={tokens}&fail={fail}", headers={"Authorization": f"Bearer {raw_key}"}
    )


@pytest.mark.urls("tests.gateway.admission_urls")
def test_tokens_are_counted_per_key_when_a_call_is_admitted(client, api_key, organization, owner):
    from apps.keys.services import api_key_create

    _, raw_key = api_key
    with override_settings(RATE_LIMIT_TOKENS_PER_MINUTE=1000):
        first = _take_tokens(client, raw_key, 300)
        refused = _take_tokens(client, raw_key, 800)
        last = _take_tokens(client, raw_key, 700)
        _, other_key = api_key_create(organization=organization, created_by=owner, name="b")
        other = _take_tokens(client, other_key, 1000)
    assert first.status_code == 200
    assert _rate_limit_headers(first) == {**_requests_headers(599), **_tokens_headers(700, 1000)}
    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    assert refused.json()["error"] == {
        "message": "Rate limit reached for tokens per min (TPM) on this API key: limit 1000, "
        "used 300, requested 800. Please try again in 30s.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    # A refused call takes nothing from the window.
    assert _rate_limit_headers(refused) == {**_requests_headers(598), **_tokens_headers(700, 1000)}
    assert last.status_code == 200
    assert last["x-ratelimit-remaining-tokens"] == "0"
    assert other.status_code == 200
    assert other["x-ratelimit-remaining-tokens"] == "0"


@pytest.mark.urls("tests.gateway.admission_urls")
def test_a_call_larger_than_the_token_limit_is_told_not_to_retry(client, api_key):
    _, raw_key = api_key
    with override_settings(RATE_LIMIT_TOKENS_PER_MINUTE=1000):
        response = _take_tokens(client, raw_key, 1001)
    assert response.status_code == 429
    assert response["x-should-retry"] == "false"
    assert "Retry-After" not in response
    assert response.json()["error"] == {
        "message": "Request too large for tokens per min (TPM) on this API key: limit 1000, "
        "requested 1001. Reduce the prompt or max_tokens.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    expected = {**_requests_headers(599), **_tokens_headers(1000, 1000)}
    assert _rate_limit_headers(response) == expected


@pytest.mark.urls("tests.gateway.admission_urls")
def test_an_error_after_counting_tokens_carries_both_headers(client, api_key):
    _, raw_key = api_key
    with override_settings(RATE_LIMIT_TOKENS_PER_MINUTE=1000):
        response = _take_tokens(client, raw_key, 100, fail="model")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert _rate_limit_headers(response) == {**_requests_headers(599), **_tokens_headers(900, 1000)}


def test_the_tester_is_not_token_limited(db):
    from apps.gateway.ratelimit import rate_limit_tokens_take
    from plugsky_site.redis_pool import redis_client

    with override_settings(RATE_LIMIT_TOKENS_PER_MINUTE=10):
        async_to_sync(rate_limit_tokens_take)(key_id=None, tokens=1_000_000)
    assert redis_client().keys("plugsky:ratelimit:*") == []


def test_the_token_limit_holds_outside_a_request(db, api_key):
    from apps.gateway.ratelimit import rate_limit_tokens_take
    from apps.protocol.errors import APIError

    row, _ = api_key
    take = async_to_sync(rate_limit_tokens_take)
    with override_settings(RATE_LIMIT_TOKENS_PER_MINUTE=10):
        take(key_id=row.pk, tokens=6)
        with pytest.raises(APIError) as refused:
            take(key_id=row.pk, tokens=6)
    assert (refused.value.status, refused.value.type) == (429, "tokens")
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "4"
