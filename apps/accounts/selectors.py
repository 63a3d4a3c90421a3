"""Reads for accounts."""

from __future__ import annotations

from apps.accounts.models import Membership, Organization, User


def user_by_email(*, email: str) -> User | None:
    return User.objects.filter(email__iexact=email.strip()).first()


def membership_for(*, user: User, organization: Organization) -> Membership | None:
    return Membership.objects.filter(user=user, organization=organization).first()


def personal_organization_for(*, user: User) -> Organization:
    """The organization created with the user (every user has exactly one)."""
    return Organization.objects.get(is_personal=True, memberships__user=user)
