import pytest


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/chat/nothing", "/v1", "/v1/models/"])
def test_unknown_v1_paths_get_a_json_404(client, db, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "unknown_url"
    assert path in error["message"]


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_wrong_method_gets_a_json_405(client, api_key, method):
    _, raw_key = api_key
    response = getattr(client, method)("/v1/models", headers={"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert error["type"] == "invalid_request_error"


def test_every_response_carries_a_request_id(client, api_key):
    _, raw_key = api_key
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {raw_key}"})
    assert response["x-request-id"].startswith("req_")
    assert int(response["openai-processing-ms"]) >= 0
