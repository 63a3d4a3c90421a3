"""Accounts services plus the trial grant that onboarding owes (see the package docstring)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.accounts import services as accounts
from apps.accounts.models import Membership, Organization, Role, User
from apps.billing.ledger import trial_grant


def _trials_grant(user: User) -> None:
    """Grant the trial to every organization the user owns, once the user is verified."""
    if not user.is_email_verified:
        return
    owned = Organization.objects.filter(memberships__user=user, memberships__role=Role.OWNER)
    for organization in owned.order_by("pk"):
        trial_grant(organization=organization)


@transaction.atomic
def user_create(
    *, email: str, password: str | None = None, is_email_verified: bool = True, **fields: Any
) -> User:
    """accounts.user_create, and the trial for the personal organization of a verified user."""
    user = accounts.user_create(
        email=email, password=password, is_email_verified=is_email_verified, **fields
    )
    _trials_grant(user)
    return user


@transaction.atomic
def organization_create(*, name: str, owner: User, is_personal: bool = False) -> Organization:
    """accounts.organization_create, and the trial when the owner is verified already."""
    organization = accounts.organization_create(name=name, owner=owner, is_personal=is_personal)
    if owner.is_email_verified:
        trial_grant(organization=organization)
    return organization


@transaction.atomic
def email_verify(*, token: str) -> User:
    """accounts.email_verify, and the trial for the organizations the user owns.

    Running it twice is harmless: the trial is unique per organization.
    """
    user = accounts.email_verify(token=token)
    _trials_grant(user)
    return user


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """accounts.invitation_accept; accepting verifies the email, which earns the owned trials."""
    was_verified = user.is_email_verified
    owned_before = list(
        Organization.objects.filter(memberships__user=user, memberships__role=Role.OWNER)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    membership = accounts.invitation_accept(token=token, user=user)
    if not was_verified:
        for organization in Organization.objects.filter(pk__in=owned_before).order_by("pk"):
            trial_grant(organization=organization)
    return membership
