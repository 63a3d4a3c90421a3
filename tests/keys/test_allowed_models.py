"""Keys limited to some models: the gateway answers others with 403 model_not_allowed."""

import json

import pytest

from apps.keys.services import api_key_create


@pytest.fixture
def nano_only(organization, owner):  # type: ignore[no-untyped-def]
    _, raw_key = api_key_create(
        organization=organization,
        created_by=owner,
        name="nano only",
        allowed_models=["smollm2-135m-instruct"],  # an alias: stored as its catalog id
    )
    return raw_key


def _post(client, raw_key, path, body):  # type: ignore[no-untyped-def]
    return client.post(
        path,
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )


def test_the_alias_is_stored_as_the_catalog_id(organization, owner, nano_only):
    from apps.keys.models import APIKey

    assert APIKey.objects.get(name="nano only").allowed_models == ["plugsky-nano"]


def test_a_model_outside_the_list_is_a_403_and_costs_nothing(client, organization, nano_only):
    from apps.usage.models import UsageRecord

    body = {"model": "plugsky-mini", "messages": [{"role": "user", "content": "hi"}]}
    response = _post(client, nano_only, "/v1/chat/completions", body)
    assert response.status_code == 403
    assert response.json()["error"] == {
        "message": response.json()["error"]["message"],
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_allowed",
    }
    assert "plugsky-nano" in response.json()["error"]["message"]
    assert not UsageRecord.objects.exists()


def test_embeddings_are_checked_too(client, nano_only):
    response = _post(client, nano_only, "/v1/embeddings", {"model": "plugsky-embed", "input": "x"})
    assert response.status_code == 403


def test_unknown_models_are_still_a_404(client, nano_only):
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    assert _post(client, nano_only, "/v1/chat/completions", body).status_code == 404


def test_the_model_list_shows_only_allowed_models(client, nano_only):
    listing = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {nano_only}").json()
    assert [model["id"] for model in listing["data"]] == ["plugsky-nano"]
    other = client.get("/v1/models/plugsky-mini", HTTP_AUTHORIZATION=f"Bearer {nano_only}")
    assert other.status_code == 403


def test_an_unrestricted_key_sees_every_model(client, api_key):
    _, raw_key = api_key
    listing = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {raw_key}").json()
    assert len(listing["data"]) > 1


def test_unknown_ids_cannot_be_allowed(organization, owner):
    with pytest.raises(ValueError):
        api_key_create(
            organization=organization, created_by=owner, name="x", allowed_models=["nope"]
        )
