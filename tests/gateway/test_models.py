from apps.catalog.builtin import BUILTIN_MODELS
from tests.openapi import validate_response


def _auth(api_key):
    return {"Authorization": f"Bearer {api_key[1]}"}


def test_list_models_matches_the_spec(client, api_key):
    response = client.get("/v1/models", headers=_auth(api_key))
    assert response.status_code == 200
    body = response.json()
    validate_response("get", "/models", 200, body)
    ids = [model["id"] for model in body["data"]]
    assert "plugsky-nano" in ids and "plugsky-embed" in ids
    assert all(model["object"] == "model" and model["owned_by"] for model in body["data"])
    assert set(ids) <= {entry.id for entry in BUILTIN_MODELS}


def test_retrieve_model_matches_the_spec(client, api_key):
    response = client.get("/v1/models/plugsky-nano", headers=_auth(api_key))
    assert response.status_code == 200
    body = response.json()
    validate_response("get", "/models/plugsky-nano", 200, body)
    assert body["id"] == "plugsky-nano"
    assert body["context_length"] > 0
    assert "chat" in body["capabilities"]


def test_retrieve_unknown_model_is_model_not_found(client, api_key):
    response = client.get("/v1/models/gpt-9", headers=_auth(api_key))
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
