"""Admin keys: format, who may mint and revoke them, how they authenticate, where they don't."""

from __future__ import annotations

from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command

from apps.accounts.models import Membership, Role
from apps.accounts.services import membership_add, membership_remove, membership_role_change
from apps.keys import secrets
from apps.keys.admin_authentication import authenticate_admin
from apps.keys.authentication import InvalidAPIKey, authenticate_async
from apps.keys.models import AdminKey
from apps.keys.services import admin_key_create, admin_key_revoke

pytestmark = pytest.mark.django_db


def _bearer(raw_key: str) -> str:
    return f"Bearer {raw_key}"


def test_admin_keys_have_their_own_prefix_and_only_a_digest_is_stored(organization, owner):  # type: ignore[no-untyped-def]
    admin_key, raw_key = admin_key_create(organization=organization, created_by=owner, name="ci")
    assert raw_key.startswith("sk-admin-") and secrets.is_well_formed_admin(raw_key)
    assert not secrets.is_well_formed(raw_key)
    assert admin_key.digest == secrets.digest(raw_key) and raw_key not in admin_key.digest
    assert admin_key.display == f"sk-admin-…{raw_key[-4:]}"


def test_only_owners_mint_or_revoke_admin_keys(organization, owner):  # type: ignore[no-untyped-def]
    from tests.factories import make_member

    admin = make_member(organization, "admin@example.com", role=Role.ADMIN)
    with pytest.raises(PermissionDenied):
        admin_key_create(organization=organization, created_by=admin, name="no")
    assert not AdminKey.objects.exists()
    admin_key, _ = admin_key_create(organization=organization, created_by=owner, name="ci")
    with pytest.raises(PermissionDenied):
        admin_key_revoke(admin_key=admin_key, revoked_by=admin)
    admin_key.refresh_from_db()
    assert admin_key.revoked_at is None


def test_an_admin_key_acts_as_its_creator_with_their_current_role(organization, owner, member):  # type: ignore[no-untyped-def]
    membership = Membership.objects.get(organization=organization, user=member)
    membership_role_change(membership=membership, role=Role.OWNER, changed_by=owner)
    admin_key, raw_key = admin_key_create(organization=organization, created_by=member, name="x")
    identity = authenticate_admin(_bearer(raw_key))
    assert (identity.key_id, identity.organization_id) == (admin_key.pk, organization.pk)
    assert identity.is_owner and identity.is_manager
    membership_role_change(membership=membership, role=Role.MEMBER, changed_by=owner)
    identity = authenticate_admin(_bearer(raw_key))
    assert (identity.is_owner, identity.is_manager) == (False, False)
    admin_key.refresh_from_db()
    assert admin_key.last_used_at is not None


def test_leaving_ends_the_key_even_after_coming_back(organization, owner, member):  # type: ignore[no-untyped-def]
    membership = Membership.objects.get(organization=organization, user=member)
    membership_role_change(membership=membership, role=Role.OWNER, changed_by=owner)
    _, raw_key = admin_key_create(organization=organization, created_by=member, name="x")
    membership_remove(membership=membership, removed_by=owner)
    with pytest.raises(InvalidAPIKey, match="no longer a member"):
        authenticate_admin(_bearer(raw_key))
    membership_add(organization=organization, user=member, role=Role.OWNER)
    with pytest.raises(InvalidAPIKey, match="no longer a member"):
        authenticate_admin(_bearer(raw_key))


def test_a_revoked_admin_key_fails_at_once(organization, owner):  # type: ignore[no-untyped-def]
    admin_key, raw_key = admin_key_create(organization=organization, created_by=owner, name="x")
    authenticate_admin(_bearer(raw_key))
    admin_key_revoke(admin_key=admin_key, revoked_by=owner)
    with pytest.raises(InvalidAPIKey, match="revoked"):
        authenticate_admin(_bearer(raw_key))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "didn't provide an admin key"),
        ("Basic abc", "didn't provide an admin key"),
        ("Bearer sk-admin-short", "Incorrect admin key"),
        ("Bearer sk-admin-" + "A" * 43, "Incorrect admin key"),
        ("Bearer sk-live-" + "A" * 43, "not an API key"),
    ],
)
def test_admin_authentication_refuses(header, message, organization):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidAPIKey, match=message):
        authenticate_admin(header)


def test_v1_refuses_an_admin_key(organization, owner):  # type: ignore[no-untyped-def]
    _, raw_key = admin_key_create(organization=organization, created_by=owner, name="x")
    with pytest.raises(InvalidAPIKey, match="only the organization admin API"):
        async_to_sync(authenticate_async)(_bearer(raw_key))


def test_v1_answers_an_admin_key_with_a_401_in_openais_envelope(client, organization, owner):  # type: ignore[no-untyped-def]
    _, raw_key = admin_key_create(organization=organization, created_by=owner, name="x")
    response = client.post(
        "/v1/chat/completions",
        {"model": "plugsky-nano", "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
        headers={"Authorization": _bearer(raw_key)},
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "invalid_api_key", None,
    )  # fmt: skip
    assert "only the organization admin API" in error["message"]


def test_create_admin_key_prints_only_the_key_for_the_users_organization(owner, organization):  # type: ignore[no-untyped-def]
    out, err = StringIO(), StringIO()
    call_command("create_admin_key", "--email", "OWNER@example.com", stdout=out, stderr=err)
    raw_key = out.getvalue().strip()
    assert out.getvalue() == raw_key + "\n" and err.getvalue() == ""
    identity = authenticate_admin(_bearer(raw_key))
    assert identity.organization_id == organization.pk
    assert AdminKey.objects.get().name == "Command-line admin key"


def test_create_admin_key_refuses_an_unknown_email(db):  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="No user"):
        call_command("create_admin_key", "--email", "nobody@example.com", stdout=StringIO())
    assert not AdminKey.objects.exists()
