"""Every dashboard write to keys, members, invitations and the organization leaves an audit row
(who, when, what), shown on the organization page; a denied write leaves none."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.models import Invitation, Membership, Role
from apps.admin_api.models import AuditEvent
from apps.keys.models import APIKey
from apps.keys.services import api_key_create
from tests.factories import make_member

pytestmark = pytest.mark.django_db


def _base(organization: Any) -> str:
    return f"/dashboard/{organization.pk}"


def _events(organization: Any) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    rows = AuditEvent.objects.filter(organization=organization).order_by("pk")
    return [(e.actor_email, e.actor_key, e.action, e.target, e.details) for e in rows]


def _membership(user: Any, organization: Any) -> Membership:
    return Membership.objects.get(user=user, organization=organization)


def test_key_create_and_revoke_are_audited(client, owner, organization):  # type: ignore[no-untyped-def]
    client.force_login(owner)
    before = timezone.now()
    response = client.post(f"{_base(organization)}/keys/", {"name": "ci", "monthly_limit_usd": "2"})
    assert response.status_code == 201
    key = APIKey.objects.get(organization=organization, name="ci")
    assert client.post(f"{_base(organization)}/keys/{key.pk}/revoke/").status_code == 302
    # A second revoke changes nothing and records nothing.
    client.post(f"{_base(organization)}/keys/{key.pk}/revoke/")
    assert _events(organization) == [
        ("owner@example.com", "", "api_key.created", f"key_{key.pk}",
         {"name": "ci", "allowed_models": [], "monthly_limit_micros": 2_000_000}),
        ("owner@example.com", "", "api_key.deleted", f"key_{key.pk}", {"name": "ci"}),
    ]  # fmt: skip
    assert AuditEvent.objects.filter(created_at__lt=before).count() == 0


def test_member_and_invitation_writes_are_audited_and_shown(client, owner, organization, member):  # type: ignore[no-untyped-def]
    client.force_login(owner)
    base = f"{_base(organization)}/organization"
    invite = {"email": "new@example.com", "role": "admin"}
    assert client.post(f"{base}/invite/", invite).status_code == 302
    invitation = Invitation.objects.get()
    assert client.post(f"{base}/invitations/{invitation.pk}/withdraw/").status_code == 302
    membership = _membership(member, organization)
    assert (
        client.post(f"{base}/members/{membership.pk}/role/", {"role": "admin"}).status_code == 302
    )
    assert client.post(f"{base}/name/", {"name": "Acme"}).status_code == 302
    assert client.post(f"{base}/members/{membership.pk}/remove/").status_code == 302
    user = f"user_{member.pk}"
    events = _events(organization)
    assert [(email, key, action, target) for email, key, action, target, _ in events] == [
        ("owner@example.com", "", "invite.sent", f"invite_{invitation.pk}"),
        ("owner@example.com", "", "invite.deleted", f"invite_{invitation.pk}"),
        ("owner@example.com", "", "user.updated", user),
        ("owner@example.com", "", "organization.updated", f"org_{organization.pk}"),
        ("owner@example.com", "", "user.deleted", user),
    ]  # fmt: skip
    details = [event[4] for event in _events(organization)]
    assert details[0] == {"email": "new@example.com", "role": "admin"}
    assert details[2] == {"role": "admin", "previous_role": "member"}
    assert details[3]["name"] == "Acme"
    assert details[4] == {"email": "member@example.com", "keys_revoked": 0, "left": False}

    page = client.get(f"{base}/").content.decode()
    for action in ("invite.sent", "invite.deleted", "user.updated", "user.deleted"):
        assert f'data-audit="{action}"' in page
    assert "role: admin, previous_role: member" in page


def test_leaving_is_audited_as_the_member_who_left(client, member, organization, owner):  # type: ignore[no-untyped-def]
    api_key_create(organization=organization, created_by=member, name="theirs")
    client.force_login(member)
    membership = _membership(member, organization)
    client.post(f"{_base(organization)}/organization/members/{membership.pk}/remove/")
    [(email, _, action, target, details)] = _events(organization)
    assert (email, action, target) == ("member@example.com", "user.deleted", f"user_{member.pk}")
    assert details == {"email": "member@example.com", "keys_revoked": 1, "left": True}


def test_denied_writes_leave_no_audit_row(client, owner, organization, member, outsider):  # type: ignore[no-untyped-def]
    admin = make_member(organization, "admin@example.com", role=Role.ADMIN)
    owners_key, _ = api_key_create(organization=organization, created_by=owner, name="owner's")
    invitation = Invitation.objects.create(
        organization=organization, email="x@example.com", role=Role.MEMBER, invited_by=owner,
        token_digest="d" * 64, expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    base = f"{_base(organization)}/organization"
    mine = _membership(owner, organization)
    members = _membership(member, organization)
    attempts = [
        # A member manages neither members, invitations, nor the organization, nor others' keys.
        (member, f"{base}/invite/", {"email": "y@example.com", "role": "member"}, 403),
        (member, f"{base}/invitations/{invitation.pk}/withdraw/", {}, 403),
        (member, f"{base}/members/{mine.pk}/role/", {"role": "member"}, 403),
        (member, f"{base}/members/{mine.pk}/remove/", {}, 403),
        (member, f"{base}/name/", {"name": "Mine now"}, 403),
        (member, f"{_base(organization)}/keys/{owners_key.pk}/revoke/", {}, 403),
        # An admin cannot touch owners; the last owner cannot be demoted.
        (admin, f"{base}/members/{mine.pk}/role/", {"role": "member"}, 403),
        (admin, f"{base}/invite/", {"email": "boss@example.com", "role": "owner"}, 403),
        (owner, f"{base}/members/{mine.pk}/role/", {"role": "member"}, 400),
        (owner, f"{base}/members/{mine.pk}/remove/", {}, 400),
        # An outsider does not even learn the organization exists.
        (outsider, f"{base}/members/{members.pk}/remove/", {}, 404),
        (outsider, f"{_base(organization)}/keys/", {"name": "intruder"}, 404),
    ]
    for user, url, data, status in attempts:
        client.force_login(user)
        assert (url, client.post(url, data).status_code) == (url, status)
    assert _events(organization) == []
    assert APIKey.objects.get(pk=owners_key.pk).revoked_at is None
    assert Invitation.objects.get(pk=invitation.pk).revoked_at is None
    assert _membership(owner, organization).role == Role.OWNER
    assert Membership.objects.filter(organization=organization).count() == 3


@pytest.mark.django_db(transaction=True)
def test_accepting_an_invitation_is_audited_as_the_invitee(client, owner, organization, mailoutbox):  # type: ignore[no-untyped-def]
    import re

    from django.db import transaction

    from apps.accounts.services import invitation_create
    from tests.factories import make_user

    with transaction.atomic():  # the email goes out on commit
        invitation_create(
            organization=organization, email="joiner@example.com", role=Role.ADMIN,
            invited_by=owner, base_url="http://testserver",
        )  # fmt: skip
    link = re.search(r"/accounts/invitations/[^/\s]+/", mailoutbox[-1].body).group(0)
    invitation = Invitation.objects.get(email="joiner@example.com")

    client.force_login(make_user("someone-else@example.com"))
    assert client.post(link).status_code == 403  # not the invited address: nothing recorded
    assert _events(organization) == []

    joiner = make_user("joiner@example.com")
    client.force_login(joiner)
    assert client.post(link).status_code == 302
    assert _events(organization) == [
        (
            "joiner@example.com",
            "",
            "invite.accepted",
            f"user_{joiner.pk}",
            {"invite": f"invite_{invitation.pk}", "role": "admin"},
        )
    ]
