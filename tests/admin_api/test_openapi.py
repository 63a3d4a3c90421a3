"""The admin API's OpenAPI document is served, and real responses of every operation validate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from apps.keys.models import APIKey
from tests.admin_api.calls import DAY, Call, known_calls, settle
from tests.admin_api.conftest import AdminClient
from tests.billing.helpers import hold_for, set_balance

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("get", "/api_keys"), ("post", "/api_keys"), ("get", "/api_keys/{key_id}"),
    ("post", "/api_keys/{key_id}"), ("delete", "/api_keys/{key_id}"), ("get", "/users"),
    ("get", "/users/{user_id}"), ("post", "/users/{user_id}"), ("delete", "/users/{user_id}"),
    ("get", "/invites"), ("post", "/invites"), ("get", "/invites/{invite_id}"),
    ("delete", "/invites/{invite_id}"), ("get", "/usage/completions"),
    ("get", "/usage/embeddings"), ("get", "/usage/audio_speeches"),
    ("get", "/usage/audio_transcriptions"), ("get", "/costs"), ("get", "/credits"),
}  # fmt: skip


@pytest.fixture
def document(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.get("/v1/organization/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return dict(json.loads(response.content))


def test_the_document_is_valid_openapi_and_lists_every_operation(document):  # type: ignore[no-untyped-def]
    validate(document)
    prefix = "/v1/organization"
    operations = {
        (method, path.removeprefix(prefix))
        for path, item in document["paths"].items()
        for method in item
    }
    assert operations == OPERATIONS
    assert document["components"]["securitySchemes"]["AdminKeyAuth"]["scheme"] == "bearer"


class _Checker:
    """Calls the admin API and validates each response against the served document."""

    def __init__(self, document: dict[str, Any], api: AdminClient) -> None:
        self.spec = OpenAPI.from_dict(document)
        self.api = api
        self.checked: set[tuple[str, int]] = set()

    def __call__(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        response = self.api.call(method, path, body, **query)
        request = MockRequest("http://testserver", method, f"/v1/organization/{path}")
        mock = MockResponse(
            data=response.content, status_code=response.status_code,
            content_type="application/json",
        )  # fmt: skip
        self.spec.validate_response(request, mock)
        self.checked.add((method, response.status_code))
        return response.json()


def test_real_responses_of_every_operation_match_the_document(  # type: ignore[no-untyped-def]
    document, client, owner_key, member_key, organization, owner, member, outsider_key
):
    check = _Checker(document, AdminClient(client, member_key))
    check("post", f"users/user_{owner.pk}", {"role": "member"})  # a member's key: 403
    check.api = AdminClient(client, owner_key)
    set_balance(organization, 10_000_000)
    hold_for(organization, 1_000)
    created = check("post", "api_keys", {"name": "a", "monthly_spend_limit": {"value": 1.5}})
    key_a = created["id"]
    check("post", "api_keys", {"name": "b", "allowed_models": ["plugsky-nano"]})
    check("get", "api_keys", limit=1)
    check("get", f"api_keys/{key_a}")
    check("post", f"api_keys/{key_a}", {"monthly_spend_limit": None})
    rows = {row.name: row for row in APIKey.objects.filter(organization=organization)}
    for call in known_calls(rows["a"], rows["b"]):
        settle(organization, call)
    window = {"start_time": int(DAY.timestamp()), "end_time": int(DAY.timestamp()) + 2 * 86400}
    check("get", "usage/completions", group_by=["model", "api_key_id", "user_id"], **window)
    check("get", "usage/embeddings", bucket_width="1h", limit=2, **window)
    settle(organization, Call(DAY, rows["a"], "hibari", 42, 0, 42, endpoint="audio.speech"))
    settle(organization, Call(DAY, None, "whisper", 3, 0, 30, endpoint="audio.transcriptions"))
    speeches = check("get", "usage/audio_speeches", group_by=["model", "api_key_id"], **window)
    assert speeches["data"][0]["results"][0]["characters"] == 42
    heard = check("get", "usage/audio_transcriptions", bucket_width="1m", limit=1, **window)
    assert heard["data"][0]["results"][0]["seconds"] == 3
    check("get", "costs", group_by=["line_item", "api_key_id"], **window)
    check("get", "credits")
    check("get", "users")
    check("get", f"users/user_{member.pk}")
    check("post", f"users/user_{member.pk}", {"role": "admin"})
    invite = check("post", "invites", {"email": "new@example.com"})
    check("get", "invites")
    check("get", f"invites/{invite['id']}")
    check("delete", f"invites/{invite['id']}")
    check("delete", f"users/user_{member.pk}")
    check("delete", f"api_keys/{key_a}")
    # The errors are documented too: 400, 401 and 404.
    check("get", "costs", start_time="soon")
    check.api = AdminClient(client, None)
    check("get", "users")
    check.api = AdminClient(client, outsider_key)
    check("get", f"api_keys/{key_a}")
    assert {status for _, status in check.checked} == {200, 201, 400, 401, 403, 404}
