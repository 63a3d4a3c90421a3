"""/v1/organization/users and /invites: the dashboard's rules, through an admin key."""

from __future__ import annotations

import pytest
from django.core import mail

from apps.accounts.models import Invitation, Membership, Role
from apps.accounts.services import invitation_create
from apps.admin_api.models import AuditEvent
from apps.keys.models import APIKey
from apps.keys.services import api_key_create
from tests.admin_api.conftest import error_of

pytestmark = pytest.mark.django_db


def _invitation(organization, owner, email="new@example.com"):  # type: ignore[no-untyped-def]
    return invitation_create(
        organization=organization, email=email, role=Role.MEMBER, invited_by=owner,
        base_url="http://testserver",
    )  # fmt: skip


def test_users_are_listed_in_openais_shape(as_owner, owner, member):  # type: ignore[no-untyped-def]
    body = as_owner.get("users").json()
    assert body["object"] == "list" and body["has_more"] is False
    assert [(user["id"], user["email"], user["role"]) for user in body["data"]] == [
        (f"user_{owner.pk}", "owner@example.com", "owner"),
        (f"user_{member.pk}", "member@example.com", "member"),
    ]
    assert body["data"][0]["object"] == "organization.user"
    assert isinstance(body["data"][0]["added_at"], int)


def test_owner_changes_a_role_and_it_is_audited(as_owner, organization, member):  # type: ignore[no-untyped-def]
    response = as_owner.post(f"users/user_{member.pk}", {"role": "admin"})
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert Membership.objects.get(organization=organization, user=member).role == Role.ADMIN
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_email, event.target) == (
        "user.updated", "owner@example.com", f"user_{member.pk}",
    )  # fmt: skip
    assert event.actor_key.startswith("sk-admin-…")
    assert event.details == {"role": "admin", "previous_role": "member"}


def test_the_last_owner_cannot_be_demoted(as_owner, organization, owner):  # type: ignore[no-untyped-def]
    response = as_owner.post(f"users/user_{owner.pk}", {"role": "member"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "last_owner"
    assert Membership.objects.get(organization=organization, user=owner).role == Role.OWNER


def test_removing_a_member_revokes_their_keys(as_owner, organization, member):  # type: ignore[no-untyped-def]
    api_key, _ = api_key_create(organization=organization, created_by=member, name="theirs")
    response = as_owner.delete(f"users/user_{member.pk}")
    assert response.json() == {
        "object": "organization.user.deleted", "id": f"user_{member.pk}", "deleted": True,
    }  # fmt: skip
    assert not Membership.objects.filter(organization=organization, user=member).exists()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert AuditEvent.objects.get().details == {"email": "member@example.com", "keys_revoked": 1}


def test_member_cannot_change_roles_remove_others_or_invite(
    as_member, organization, owner, member, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    before = sorted(Membership.objects.values_list("user_id", "role"))
    with django_capture_on_commit_callbacks(execute=True):
        denied = [
            as_member.post(f"users/user_{owner.pk}", {"role": "member"}),
            as_member.post(f"users/user_{member.pk}", {"role": "owner"}),
            as_member.delete(f"users/user_{owner.pk}"),
            as_member.post("invites", {"email": "friend@example.com"}),
            as_member.get("invites"),
        ]
    assert [response.status_code for response in denied] == [403] * 5
    assert {error_of(response)["code"] for response in denied} == {"insufficient_permissions"}
    assert sorted(Membership.objects.values_list("user_id", "role")) == before
    assert not Invitation.objects.exists()
    assert not AuditEvent.objects.exists()
    assert mail.outbox == []


def test_member_may_read_users(as_member):  # type: ignore[no-untyped-def]
    assert len(as_member.get("users").json()["data"]) == 2


def test_outsider_gets_404_for_this_organizations_people(as_outsider, organization, owner, member):  # type: ignore[no-untyped-def]
    invitation = _invitation(organization, owner)
    before = sorted(Membership.objects.values_list("user_id", "organization_id", "role"))
    for response in (
        as_outsider.get(f"users/user_{member.pk}"),
        as_outsider.post(f"users/user_{member.pk}", {"role": "admin"}),
        as_outsider.delete(f"users/user_{member.pk}"),
        as_outsider.get(f"invites/invite_{invitation.pk}"),
        as_outsider.delete(f"invites/invite_{invitation.pk}"),
    ):
        assert response.status_code == 404
    assert sorted(Membership.objects.values_list("user_id", "organization_id", "role")) == before
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_owner_invites_lists_and_withdraws(
    as_owner, organization, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        created = as_owner.post("invites", {"email": "New@Example.com", "role": "admin"})
    assert created.status_code == 201
    body = created.json()
    invitation = Invitation.objects.get(organization=organization)
    assert body["id"] == f"invite_{invitation.pk}"
    assert (body["object"], body["email"], body["role"], body["status"]) == (
        "organization.invite", "new@example.com", "admin", "pending",
    )  # fmt: skip
    assert body["accepted_at"] is None
    assert [message.to for message in mail.outbox] == [["new@example.com"]]
    assert [item["id"] for item in as_owner.get("invites").json()["data"]] == [body["id"]]
    deleted = as_owner.delete(f"invites/{body['id']}")
    assert deleted.json() == {
        "object": "organization.invite.deleted", "id": body["id"], "deleted": True,
    }  # fmt: skip
    assert as_owner.get(f"invites/{body['id']}").json()["status"] == "revoked"
    assert list(AuditEvent.objects.order_by("pk").values_list("action", flat=True)) == [
        "invite.sent", "invite.deleted",
    ]  # fmt: skip


def test_invites_walk_to_the_end(as_owner, organization, owner):  # type: ignore[no-untyped-def]
    made = [_invitation(organization, owner, f"p{i}@example.com") for i in range(5)]
    seen, after = [], None
    while True:
        page = as_owner.get("invites", limit=2, **({"after": after} if after else {})).json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == [f"invite_{invitation.pk}" for invitation in made]


def test_a_member_may_leave_through_their_own_key(as_member, organization, member):  # type: ignore[no-untyped-def]
    assert as_member.delete(f"users/user_{member.pk}").status_code == 200
    assert not Membership.objects.filter(organization=organization, user=member).exists()
    # Leaving ended the key itself.
    assert as_member.get("users").status_code == 401
    assert not APIKey.objects.filter(created_by=member, revoked_at__isnull=True).exists()
