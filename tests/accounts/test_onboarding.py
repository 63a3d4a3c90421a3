"""Onboarding adds the trial that the accounts services, the lower layer, leave out."""

import re

import pytest
from django.core import mail
from django.db import transaction

from apps.accounts import services as accounts
from apps.accounts.models import Role
from apps.accounts.selectors import personal_organization_for
from apps.billing.models import EntryKind, LedgerEntry
from apps.onboarding import services as onboarding


def _trials(organization) -> list[int]:  # type: ignore[no-untyped-def]
    entries = LedgerEntry.objects.filter(organization=organization, kind=EntryKind.TRIAL_GRANT)
    return list(entries.values_list("amount_micros", flat=True))


def test_the_accounts_primitive_creates_an_account_without_credit(db):
    user = accounts.user_create(email="bare@example.com")
    assert user.is_email_verified
    assert _trials(personal_organization_for(user=user)) == []


def test_onboarding_grants_a_verified_users_trial_once(db):
    user = onboarding.user_create(email="new@example.com")
    organization = personal_organization_for(user=user)
    assert _trials(organization) == [5_000_000]
    assert onboarding.email_verify(token=accounts.email_verification_token(user=user)) == user
    assert _trials(organization) == [5_000_000]


def test_an_unverified_user_waits_for_the_link(db):
    user = onboarding.user_create(email="later@example.com", is_email_verified=False)
    organization = personal_organization_for(user=user)
    assert _trials(organization) == []
    onboarding.email_verify(token=accounts.email_verification_token(user=user))
    assert _trials(organization) == [5_000_000]


@pytest.mark.django_db(transaction=True)
def test_accepting_an_invitation_verifies_and_grants_the_own_trial(owner, organization):
    newcomer = onboarding.user_create(email="invited@example.com", is_email_verified=False)
    own = personal_organization_for(user=newcomer)
    with transaction.atomic():
        accounts.invitation_create(
            organization=organization,
            email=newcomer.email,
            role=Role.MEMBER,
            invited_by=owner,
            base_url="http://testserver",
        )
    token = re.search(r"/accounts/invitations/([^/\s]+)/", mail.outbox[-1].body).group(1)
    onboarding.invitation_accept(token=token, user=newcomer)
    assert newcomer.is_email_verified
    assert _trials(own) == [5_000_000]
    assert _trials(organization) == [5_000_000]  # the owner's, from before; not a second one
