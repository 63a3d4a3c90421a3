"""Test data builders."""

from __future__ import annotations

from apps.accounts.models import Organization, Role, User
from apps.accounts.services import membership_add
from apps.onboarding.services import user_create


def make_user(email: str, password: str = "correct horse battery staple") -> User:
    return user_create(email=email, password=password)


def make_member(organization: Organization, email: str, role: Role = Role.MEMBER) -> User:
    user = make_user(email)
    membership_add(organization=organization, user=user, role=role)
    return user
