"""/v1/organization/api_keys: list, create, retrieve, update, revoke — per persona."""

from __future__ import annotations

import pytest

from apps.admin_api.models import AuditEvent
from apps.billing.models import SpendLimit
from apps.keys.models import APIKey
from apps.keys.services import api_key_create
from tests.admin_api.conftest import AdminClient, error_of

pytestmark = pytest.mark.django_db


def _key_id(api_key: APIKey) -> str:
    return f"key_{api_key.pk}"


def test_owner_creates_a_key_with_models_and_a_limit_and_sees_its_secret_once(
    as_owner, organization
):  # type: ignore[no-untyped-def]
    response = as_owner.post(
        "api_keys",
        {"name": "ci", "allowed_models": ["plugsky-nano"],
         "monthly_spend_limit": {"value": 12.345678, "currency": "usd"}},
    )  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    api_key = APIKey.objects.get(organization=organization, name="ci")
    assert body["id"] == _key_id(api_key)
    assert body["object"] == "organization.api_key"
    assert body["value"].startswith("sk-live-") and body["value"][-4:] == api_key.display[-4:]
    assert body["redacted_value"] == api_key.display
    assert body["allowed_models"] == ["plugsky-nano"]
    assert body["monthly_spend_limit"] == {"value": 12.345678, "currency": "usd"}
    assert SpendLimit.objects.get(api_key=api_key).monthly_limit_micros == 12_345_678
    assert body["owner"]["user"]["email"] == "owner@example.com"
    again = as_owner.get(f"api_keys/{body['id']}").json()
    assert "value" not in again
    assert again == {key: value for key, value in body.items() if key != "value"}


def test_unknown_model_is_a_400_and_creates_nothing(as_owner, organization):  # type: ignore[no-untyped-def]
    response = as_owner.post("api_keys", {"name": "x", "allowed_models": ["no-such-model"]})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error", "allowed_models", "model_not_found",
    )  # fmt: skip
    assert not APIKey.objects.filter(organization=organization).exists()
    assert not AuditEvent.objects.exists()


def test_missing_name_is_a_400_naming_the_parameter(as_owner):  # type: ignore[no-untyped-def]
    error = error_of(as_owner.post("api_keys", {}))
    assert (error["param"], error["code"]) == ("name", "missing_required_parameter")


def test_update_changes_limits_and_models_and_null_removes_the_limit(as_owner, organization, owner):  # type: ignore[no-untyped-def]
    api_key, _ = api_key_create(organization=organization, created_by=owner, name="k")
    path = f"api_keys/{_key_id(api_key)}"
    body = as_owner.post(path, {"monthly_spend_limit": {"value": 5}, "name": "renamed"}).json()
    assert body["monthly_spend_limit"] == {"value": 5.0, "currency": "usd"}
    assert body["name"] == "renamed"
    assert SpendLimit.objects.get(api_key=api_key).monthly_limit_micros == 5_000_000
    body = as_owner.post(path, {"monthly_spend_limit": None, "allowed_models": ["plugsky-nano"]})
    assert body.status_code == 200
    assert body.json()["monthly_spend_limit"] is None
    assert not SpendLimit.objects.filter(api_key=api_key).exists()
    api_key.refresh_from_db()
    assert (api_key.name, api_key.allowed_models) == ("renamed", ["plugsky-nano"])


def test_delete_revokes_the_key_and_it_disappears_from_the_api(as_owner, organization, owner):  # type: ignore[no-untyped-def]
    api_key, _ = api_key_create(organization=organization, created_by=owner, name="k")
    response = as_owner.delete(f"api_keys/{_key_id(api_key)}")
    assert response.status_code == 200
    assert response.json() == {
        "object": "organization.api_key.deleted", "id": _key_id(api_key), "deleted": True,
    }  # fmt: skip
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert as_owner.get(f"api_keys/{_key_id(api_key)}").status_code == 404
    assert as_owner.get("api_keys").json()["data"] == []


def test_member_may_mint_keys_but_not_change_or_revoke_the_owners(as_member, organization, owner):  # type: ignore[no-untyped-def]
    owners_key, _ = api_key_create(organization=organization, created_by=owner, name="prod")
    SpendLimit.objects.create(
        organization=organization, api_key=owners_key, monthly_limit_micros=7, month="2026-12-01"
    )
    path = f"api_keys/{_key_id(owners_key)}"
    for response in (
        as_member.post(path, {"monthly_spend_limit": {"value": 1000}, "name": "mine"}),
        as_member.delete(path),
    ):
        assert response.status_code == 403
        assert error_of(response)["code"] == "insufficient_permissions"
    owners_key.refresh_from_db()
    assert (owners_key.name, owners_key.revoked_at) == ("prod", None)
    assert SpendLimit.objects.get(api_key=owners_key).monthly_limit_micros == 7
    assert not AuditEvent.objects.exists()
    created = as_member.post("api_keys", {"name": "member's"})
    assert created.status_code == 201
    assert as_member.delete(f"api_keys/{created.json()['id']}").status_code == 200


def test_outsider_gets_404_for_this_organizations_keys_and_changes_nothing(as_outsider, api_key):  # type: ignore[no-untyped-def]
    row, _ = api_key
    path = f"api_keys/{_key_id(row)}"
    for response in (as_outsider.get(path), as_outsider.post(path, {"name": "x"}),
                     as_outsider.delete(path)):  # fmt: skip
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
    row.refresh_from_db()
    assert (row.name, row.revoked_at) == ("test key", None)
    assert as_outsider.get("api_keys").json()["data"] == []


def test_listing_walks_every_key_once_to_the_end(as_owner, organization, owner):  # type: ignore[no-untyped-def]
    made = [
        api_key_create(organization=organization, created_by=owner, name=f"k{i}")[0]
        for i in range(7)
    ]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        query = {"limit": 3, **({"after": after} if after else {})}
        page = as_owner.get("api_keys", **query).json()
        pages += 1
        seen += [key["id"] for key in page["data"]]
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert pages == 3
    assert seen == [_key_id(key) for key in made]


@pytest.mark.parametrize("query", [{"after": "user_1"}, {"after": "key_x"}, {"limit": 0}])
def test_bad_list_parameters_are_400s(as_owner, query):  # type: ignore[no-untyped-def]
    response = as_owner.get("api_keys", **query)
    assert response.status_code == 400
    assert error_of(response)["param"] == next(iter(query))


def test_without_a_key_or_with_an_api_key_the_admin_api_is_a_401(client, api_key):  # type: ignore[no-untyped-def]
    _, raw_key = api_key
    for key in (None, raw_key, "sk-admin-" + "x" * 43):
        response = AdminClient(client, key).get("api_keys")
        assert response.status_code == 401
        error = error_of(response)
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert "not an API key" in error_of(AdminClient(client, raw_key).get("api_keys"))["message"]


def test_an_unknown_admin_path_is_the_gateways_json_404(as_owner):  # type: ignore[no-untyped-def]
    response = as_owner.get("projects")
    assert response.status_code == 404
    assert error_of(response)["code"] == "unknown_url"
