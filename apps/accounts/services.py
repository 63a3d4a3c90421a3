"""Writes for accounts: users, organizations, memberships."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.accounts.models import Membership, Organization, Role, User
from apps.billing.services import trial_grant


@transaction.atomic
def user_create(*, email: str, password: str | None = None, **fields: Any) -> User:
    """Create a user together with a personal organization that the user owns."""
    email = User.objects.normalize_email(email).lower()
    user = User(email=email, **fields)
    user.set_password(password)  # None gives an unusable password (API-only users)
    user.save()
    organization_create(name=f"{email}'s organization", owner=user, is_personal=True)
    return user


@transaction.atomic
def organization_create(*, name: str, owner: User, is_personal: bool = False) -> Organization:
    """Create an organization with its first owner and its trial credit."""
    organization = Organization.objects.create(name=name, is_personal=is_personal)
    Membership.objects.create(user=owner, organization=organization, role=Role.OWNER)
    trial_grant(organization=organization)
    return organization


def membership_add(*, organization: Organization, user: User, role: Role) -> Membership:
    """Add a user to an organization with a role."""
    return Membership.objects.create(organization=organization, user=user, role=role)
