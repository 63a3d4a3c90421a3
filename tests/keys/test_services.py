import pytest
from django.core.exceptions import PermissionDenied

from apps.keys import secrets
from apps.keys.models import APIKey
from apps.keys.services import api_key_create, api_key_revoke


def test_create_stores_only_digest_and_display_form(organization, owner):
    api_key, raw_key = api_key_create(organization=organization, created_by=owner, name="ci")
    stored = APIKey.objects.get(pk=api_key.pk)
    assert stored.digest == secrets.digest(raw_key)
    assert stored.display == f"sk-live-…{raw_key[-4:]}"
    every_value = " ".join(
        str(value) for value in APIKey.objects.values().get(pk=api_key.pk).values()
    )
    assert raw_key not in every_value
    assert raw_key[8:] not in every_value


def test_member_can_create_a_key(organization, member):
    api_key, _ = api_key_create(organization=organization, created_by=member, name="mine")
    assert api_key.created_by == member


def test_outsider_cannot_create_a_key_and_nothing_changes(organization, outsider):
    before = APIKey.objects.count()
    with pytest.raises(PermissionDenied):
        api_key_create(organization=organization, created_by=outsider, name="intruder")
    assert APIKey.objects.count() == before


def test_owner_revokes_a_members_key(organization, owner, member):
    api_key, _ = api_key_create(organization=organization, created_by=member, name="m")
    api_key_revoke(api_key=api_key, revoked_by=owner)
    assert APIKey.objects.get(pk=api_key.pk).revoked_at is not None


def test_member_revokes_own_key(organization, member):
    api_key, _ = api_key_create(organization=organization, created_by=member, name="m")
    api_key_revoke(api_key=api_key, revoked_by=member)
    assert APIKey.objects.get(pk=api_key.pk).revoked_at is not None


def test_member_cannot_revoke_the_owners_key_and_nothing_changes(api_key, member):
    row, _ = api_key
    with pytest.raises(PermissionDenied):
        api_key_revoke(api_key=row, revoked_by=member)
    assert APIKey.objects.get(pk=row.pk).revoked_at is None


def test_outsider_cannot_revoke_and_nothing_changes(api_key, outsider):
    row, _ = api_key
    with pytest.raises(PermissionDenied):
        api_key_revoke(api_key=row, revoked_by=outsider)
    assert APIKey.objects.get(pk=row.pk).revoked_at is None
