"""Every dashboard view, as the owner, a member and an outsider: who may, and that a refusal
changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import Invitation, Membership, Organization
from apps.billing.models import LedgerEntry, SpendLimit, TopUp, TopUpStatus
from apps.keys.models import APIKey
from tests.factories import make_member


@pytest.fixture
def world(organization, owner, member, outsider, api_key):  # type: ignore[no-untyped-def]
    other = make_member(organization, "other@example.com")
    invitation = Invitation.objects.create(
        organization=organization,
        email="invitee@example.com",
        token_digest="0" * 64,
        invited_by=owner,
        expires_at=timezone.now() + timedelta(days=7),
    )
    topup = TopUp.objects.create(
        organization=organization,
        amount_micros=25_000_000,
        status=TopUpStatus.COMPLETED,
        stripe_session_id="cs_test_receipt",
        stripe_payment_intent_id="pi_test_receipt",
        created_by=owner,
        completed_at=timezone.now(),
    )
    return {
        "org": organization.pk,
        "key": api_key[0].pk,
        "invitation": invitation.pk,
        "other": Membership.objects.get(user=other, organization=organization).pk,
        "topup": topup.pk,
        "users": {"owner": owner, "member": member, "outsider": outsider},
    }


def state() -> tuple[object, ...]:
    """Everything a dashboard action could change."""
    return (
        sorted(APIKey.objects.values_list("pk", "name", "revoked_at", "allowed_models")),
        sorted(Membership.objects.values_list("user_id", "organization_id", "role")),
        sorted(Invitation.objects.values_list("pk", "email", "revoked_at", "accepted_at")),
        sorted(Organization.objects.values_list("pk", "name")),
        SpendLimit.objects.count(),
        LedgerEntry.objects.count(),
    )


READS = [
    "/dashboard/{org}/",
    "/dashboard/{org}/keys/",
    "/dashboard/{org}/keys/{key}/revoke/",
    "/dashboard/{org}/usage/",
    "/dashboard/{org}/usage/?days=7&by=key",
    "/dashboard/{org}/usage/requests/",
    "/dashboard/{org}/usage/export.csv",
    "/dashboard/{org}/organization/",
    "/dashboard/{org}/tester/",
    "/billing/?organization={org}",
]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize(
    ("persona", "expected"), [("owner", 200), ("member", 200), ("outsider", 404)]
)
def test_reads(client, world, path, persona, expected):  # type: ignore[no-untyped-def]
    if persona == "member" and "/revoke/" in path:
        expected = 403  # the owner's key: a member may revoke only their own
    client.force_login(world["users"][persona])
    before = state()
    response = client.get(path.format(**world))
    assert response.status_code == expected
    assert state() == before


@pytest.mark.parametrize(
    ("persona", "expected"), [("owner", 200), ("member", 403), ("outsider", 404)]
)
def test_receipts_are_for_managers(client, world, persona, expected):  # type: ignore[no-untyped-def]
    client.force_login(world["users"][persona])
    response = client.get("/dashboard/{org}/receipts/{topup}/".format(**world))
    assert response.status_code == expected
    if expected == 200:
        assert "PLG-" in response.content.decode() and "$25.00" in response.content.decode()


WRITES = [
    # (path, data, status for owner, for member)
    ("/dashboard/{org}/keys/", {"name": "New"}, 201, 201),
    ("/dashboard/{org}/keys/{key}/revoke/", {}, 302, 403),
    (
        "/dashboard/{org}/organization/invite/",
        {"email": "n@example.com", "role": "member"},
        302,
        403,
    ),
    ("/dashboard/{org}/organization/invitations/{invitation}/withdraw/", {}, 302, 403),
    ("/dashboard/{org}/organization/members/{other}/role/", {"role": "admin"}, 302, 403),
    ("/dashboard/{org}/organization/members/{other}/remove/", {}, 302, 403),
    ("/dashboard/{org}/organization/name/", {"name": "Renamed"}, 302, 403),
]


@pytest.mark.parametrize(("path", "data", "owner_status", "member_status"), WRITES)
@pytest.mark.parametrize("persona", ["owner", "member", "outsider"])
def test_writes(client, world, path, data, owner_status, member_status, persona):  # type: ignore[no-untyped-def]
    client.force_login(world["users"][persona])
    before = state()
    response = client.post(path.format(**world), data)
    expected = {"owner": owner_status, "member": member_status, "outsider": 404}[persona]
    assert response.status_code == expected
    if expected in (403, 404):
        assert state() == before
    else:
        assert state() != before


@pytest.mark.parametrize("path", [*READS, "/dashboard/"])
def test_anonymous_visitors_are_sent_to_log_in(client, world, path):  # type: ignore[no-untyped-def]
    response = client.get(path.format(**world))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_unknown_organization_is_a_404(client, owner):
    client.force_login(owner)
    assert client.get("/dashboard/999999/").status_code == 404


def test_another_organizations_key_cannot_be_revoked_through_mine(client, owner, outsider):
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create

    theirs, _ = api_key_create(
        organization=personal_organization_for(user=outsider), created_by=outsider, name="theirs"
    )
    mine = personal_organization_for(user=owner)
    client.force_login(owner)
    response = client.post(f"/dashboard/{mine.pk}/keys/{theirs.pk}/revoke/")
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_dashboard_home_goes_to_the_personal_organization(client, owner, organization):
    client.force_login(owner)
    assert client.get("/dashboard/")["Location"] == f"/dashboard/{organization.pk}/"
