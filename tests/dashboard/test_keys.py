from apps.billing.models import SpendLimit
from apps.keys import secrets
from apps.keys.models import APIKey


def _create(client, organization, **data):  # type: ignore[no-untyped-def]
    return client.post(f"/dashboard/{organization.pk}/keys/", {"name": "Backend", **data})


def test_a_new_key_is_shown_once_never_cached_and_stored_only_as_a_digest(
    client, owner, organization
):
    client.force_login(owner)
    response = _create(client, organization)
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    raw_key = page.split('data-testid="new-key" spellcheck="false"')[0].rsplit('value="', 1)[1]
    raw_key = raw_key.split('"')[0]
    assert secrets.is_well_formed(raw_key)
    api_key = APIKey.objects.get()
    assert api_key.digest == secrets.digest(raw_key)
    assert (api_key.name, api_key.created_by, api_key.allowed_models) == ("Backend", owner, [])

    listing = client.get(f"/dashboard/{organization.pk}/keys/").content.decode()
    assert raw_key not in listing
    assert api_key.display in listing


def test_a_key_with_a_spend_limit_and_allowed_models(client, owner, organization):
    client.force_login(owner)
    response = _create(
        client,
        organization,
        monthly_limit_usd="12.50",
        allowed_models=["plugsky-nano", "plugsky-embed"],
    )
    assert response.status_code == 201
    api_key = APIKey.objects.get()
    assert api_key.allowed_models == ["plugsky-nano", "plugsky-embed"]
    limit = SpendLimit.objects.get(api_key=api_key)
    assert limit.monthly_limit_micros == 12_500_000
    page = client.get(f"/dashboard/{organization.pk}/keys/").content.decode()
    assert "of $12.50" in page


def test_an_invalid_form_creates_nothing(client, owner, organization):
    client.force_login(owner)
    response = _create(client, organization, name="", monthly_limit_usd="-1")
    assert response.status_code == 400
    response = _create(client, organization, allowed_models=["no-such-model"])
    assert response.status_code == 400
    assert not APIKey.objects.exists()
    assert not SpendLimit.objects.exists()


def test_revoking_through_the_confirmation(client, owner, organization, api_key):
    row, raw_key = api_key
    client.force_login(owner)
    confirm = client.get(f"/dashboard/{organization.pk}/keys/{row.pk}/revoke/")
    assert "Revoke “test key”?" in confirm.content.decode()
    response = client.post(f"/dashboard/{organization.pk}/keys/{row.pk}/revoke/")
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code == 401


def test_a_member_may_revoke_their_own_key(client, member, organization):
    client.force_login(member)
    _create(client, organization)
    api_key = APIKey.objects.get()
    response = client.post(f"/dashboard/{organization.pk}/keys/{api_key.pk}/revoke/")
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_active_keys_are_listed_before_revoked_ones(client, owner, organization):
    from apps.keys.services import api_key_create, api_key_revoke

    api_key_create(organization=organization, created_by=owner, name="old")
    api_key_create(organization=organization, created_by=owner, name="active")
    revoked, _ = api_key_create(organization=organization, created_by=owner, name="revoked")
    api_key_revoke(api_key=revoked, revoked_by=owner)
    client.force_login(owner)
    page = client.get(f"/dashboard/{organization.pk}/keys/").content.decode()
    assert page.index(">active<") < page.index(">old<") < page.index(">revoked<")
