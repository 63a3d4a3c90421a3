"""The audit log is append-only and shown on the dashboard's organization page; admin keys are
created there (owners only, shown once) and revoked there."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from apps.accounts.models import Role
from apps.admin_api.models import AuditEvent
from apps.keys.models import AdminKey
from apps.keys.services import admin_key_create
from tests.factories import make_member

pytestmark = pytest.mark.django_db


def _page(organization) -> str:  # type: ignore[no-untyped-def]
    return f"/dashboard/{organization.pk}/organization/"


def test_the_audit_log_refuses_updates_and_deletes(as_owner):  # type: ignore[no-untyped-def]
    as_owner.post("api_keys", {"name": "audited"})
    event = AuditEvent.objects.get()
    assert (event.action, event.details["name"]) == ("api_key.created", "audited")
    for change in (
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="nothing"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()
    assert AuditEvent.objects.get().action == "api_key.created"


def test_owner_creates_an_admin_key_shown_once_and_audited(client, organization, owner):  # type: ignore[no-untyped-def]
    client.force_login(owner)
    response = client.post(f"{_page(organization)}admin-keys/", {"name": "finance"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    admin_key = AdminKey.objects.get(organization=organization)
    raw_key = response.context["raw_admin_key"]
    assert raw_key.startswith("sk-admin-") and raw_key in response.content.decode()
    later = client.get(_page(organization)).content.decode()
    assert raw_key not in later and admin_key.display in later
    assert 'data-audit="admin_key.created"' in later
    event = AuditEvent.objects.get()
    assert (event.actor_email, event.actor_key, event.target) == (
        "owner@example.com", "", admin_key.display,
    )  # fmt: skip


def test_admin_api_writes_appear_in_the_dashboards_audit_table(
    client, as_owner, organization, owner
):  # type: ignore[no-untyped-def]
    created = as_owner.post("api_keys", {"name": "ci"}).json()
    client.force_login(owner)
    html = client.get(_page(organization)).content.decode()
    assert 'data-audit="api_key.created"' in html and created["id"] in html


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER])
def test_non_owners_cannot_create_or_revoke_admin_keys(client, organization, owner, role):  # type: ignore[no-untyped-def]
    person = make_member(organization, "person@example.com", role=role)
    admin_key, _ = admin_key_create(organization=organization, created_by=owner, name="x")
    client.force_login(person)
    assert client.post(f"{_page(organization)}admin-keys/", {"name": "mine"}).status_code == 403
    revoke = f"{_page(organization)}admin-keys/{admin_key.pk}/revoke/"
    assert client.post(revoke).status_code == 403
    assert list(AdminKey.objects.values_list("name", "revoked_at")) == [("x", None)]
    assert not AuditEvent.objects.exists()
    assert "Admin keys" not in client.get(_page(organization)).content.decode()


def test_outsider_cannot_reach_the_admin_keys(client, organization, owner, outsider):  # type: ignore[no-untyped-def]
    admin_key, _ = admin_key_create(organization=organization, created_by=owner, name="x")
    client.force_login(outsider)
    revoke = f"{_page(organization)}admin-keys/{admin_key.pk}/revoke/"
    assert client.post(revoke).status_code == 404
    assert client.post(f"{_page(organization)}admin-keys/", {"name": "x"}).status_code == 404
    admin_key.refresh_from_db()
    assert admin_key.revoked_at is None and AdminKey.objects.count() == 1


def test_owner_revokes_an_admin_key_and_the_api_then_refuses_it(
    client, as_owner, organization, owner
):  # type: ignore[no-untyped-def]
    admin_key = AdminKey.objects.get(organization=organization)
    assert as_owner.get("users").status_code == 200
    client.force_login(owner)
    response = client.post(f"{_page(organization)}admin-keys/{admin_key.pk}/revoke/")
    assert response.status_code == 302
    assert as_owner.get("users").status_code == 401
    assert AuditEvent.objects.get().action == "admin_key.revoked"
