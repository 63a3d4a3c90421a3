import re

import pytest
from django.core import mail
from django.utils.html import escape

from apps.accounts.models import Invitation, Membership, Role, User
from apps.keys.models import APIKey
from apps.keys.services import api_key_create
from tests.factories import make_member

pytestmark = pytest.mark.django_db(transaction=True)  # invitation emails leave at commit


def _invite(client, organization, email="new@example.com", role="member"):  # type: ignore[no-untyped-def]
    return client.post(
        f"/dashboard/{organization.pk}/organization/invite/", {"email": email, "role": role}
    )


def _link() -> str:
    return re.search(r"http://testserver(/accounts/invitations/\S+/)", mail.outbox[-1].body).group(
        1
    )


def test_an_invitation_by_email_signed_up_and_accepted(client, owner, organization):
    client.force_login(owner)
    assert _invite(client, organization, "New@Example.com", "admin").status_code == 302
    assert mail.outbox[-1].to == ["new@example.com"]
    assert organization.name in mail.outbox[-1].subject
    link = _link()
    client.logout()

    page = client.get(link).content.decode()
    assert f"Join {escape(organization.name)}" in page and "admin" in page
    signup = client.post(
        f"/accounts/signup/?next={link}",
        {"email": "new@example.com", "password": "a long and unusual passphrase 42"},
    )
    assert signup["Location"] == link
    response = client.post(link)
    assert response.status_code == 302
    newcomer = User.objects.get(email="new@example.com")
    assert Membership.objects.get(user=newcomer, organization=organization).role == Role.ADMIN
    assert newcomer.is_email_verified  # the invitation link proved the address
    assert client.post(link).status_code == 410  # used up


def test_only_the_invited_address_can_accept(client, owner, organization, outsider):
    client.force_login(owner)
    _invite(client, organization)
    link = _link()
    client.force_login(outsider)
    response = client.post(link)
    assert response.status_code == 403
    assert not Membership.objects.filter(user=outsider, organization=organization).exists()
    assert Invitation.objects.get().accepted_at is None


def test_inviting_again_renews_the_link(client, owner, organization):
    client.force_login(owner)
    _invite(client, organization)
    first = _link()
    _invite(client, organization)
    assert Invitation.objects.count() == 1
    assert client.get(first).status_code == 410
    assert client.get(_link()).status_code == 200


def test_a_withdrawn_invitation_stops_working(client, owner, organization):
    client.force_login(owner)
    _invite(client, organization)
    link = _link()
    invitation = Invitation.objects.get()
    client.post(f"/dashboard/{organization.pk}/organization/invitations/{invitation.pk}/withdraw/")
    assert client.get(link).status_code == 410


def test_members_cannot_be_invited_twice(client, owner, organization, member):
    client.force_login(owner)
    response = _invite(client, organization, "member@example.com")
    assert response.status_code == 400
    assert not Invitation.objects.exists()


def test_admins_cannot_touch_owners(client, owner, organization):
    admin = make_member(organization, "admin@example.com", role=Role.ADMIN)
    client.force_login(admin)
    owner_membership = Membership.objects.get(user=owner, organization=organization)
    base = f"/dashboard/{organization.pk}/organization/members/{owner_membership.pk}"
    assert client.post(f"{base}/role/", {"role": "member"}).status_code == 403
    assert client.post(f"{base}/remove/").status_code == 403
    assert _invite(client, organization, "boss@example.com", "owner").status_code == 403
    owner_membership.refresh_from_db()
    assert owner_membership.role == Role.OWNER
    assert not Invitation.objects.exists()


def test_the_last_owner_cannot_leave_or_be_demoted(client, owner, organization):
    client.force_login(owner)
    mine = Membership.objects.get(user=owner, organization=organization)
    base = f"/dashboard/{organization.pk}/organization/members/{mine.pk}"
    assert client.post(f"{base}/role/", {"role": "member"}).status_code == 400
    assert client.post(f"{base}/remove/").status_code == 400
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


def test_removing_a_member_revokes_the_keys_they_created(client, owner, organization, member):
    theirs, raw_key = api_key_create(organization=organization, created_by=member, name="theirs")
    mine, _ = api_key_create(organization=organization, created_by=owner, name="mine")
    client.force_login(owner)
    membership = Membership.objects.get(user=member, organization=organization)
    response = client.post(
        f"/dashboard/{organization.pk}/organization/members/{membership.pk}/remove/"
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert APIKey.objects.get(pk=theirs.pk).revoked_at is not None
    assert APIKey.objects.get(pk=mine.pk).revoked_at is None
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code == 401


def test_a_member_can_leave(client, member, organization):
    client.force_login(member)
    membership = Membership.objects.get(user=member, organization=organization)
    response = client.post(
        f"/dashboard/{organization.pk}/organization/members/{membership.pk}/remove/"
    )
    assert response["Location"] == "/dashboard/"
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert client.get(f"/dashboard/{organization.pk}/").status_code == 404


def test_the_switcher_lists_every_organization_of_the_user(client, member, organization):
    client.force_login(member)
    page = client.get(f"/dashboard/{organization.pk}/").content.decode()
    assert escape(organization.name) in page
    assert escape("member@example.com's organization") in page
