"""Authenticate `Authorization: Bearer sk-admin-…` for the organization admin API.

Admin traffic is light, so every request reads the key and its creator's membership from the
database: a revocation, a demotion or a departure counts from the very next request.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from apps.accounts.models import Membership, Role
from apps.keys import secrets
from apps.keys.authentication import InvalidAPIKey
from apps.keys.models import AdminKey

_MISSING = (
    "You didn't provide an admin key. Send it in an Authorization header using Bearer auth "
    "(i.e. Authorization: Bearer sk-admin-…). Owners create admin keys in the Plugsky dashboard."
)
_NOT_ADMIN = (
    "The organization admin API takes an admin key (sk-admin-…), not an API key. "
    "Owners create admin keys in the Plugsky dashboard."
)


@dataclass(frozen=True)
class AdminIdentity:
    """Who an admin API request acts as: the key, its organization and its creator's role."""

    key_id: int
    organization_id: int
    membership: Membership

    @property
    def is_manager(self) -> bool:
        return self.membership.is_manager

    @property
    def is_owner(self) -> bool:
        return self.membership.role == Role.OWNER


def _bearer(authorization: str | None) -> str:
    scheme, _, raw_key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not raw_key.strip():
        raise InvalidAPIKey(_MISSING)
    return raw_key.strip()


def _incorrect(raw_key: str) -> InvalidAPIKey:
    shown = f"{raw_key[:9]}…{raw_key[-4:]}" if len(raw_key) > 13 else "(hidden)"
    return InvalidAPIKey(f"Incorrect admin key provided: {shown}.")


def authenticate_admin(authorization: str | None) -> AdminIdentity:
    """The identity behind an admin key in an Authorization header, or InvalidAPIKey."""
    raw_key = _bearer(authorization)
    if raw_key.startswith(secrets.PREFIX):
        raise InvalidAPIKey(_NOT_ADMIN)
    if not secrets.is_well_formed_admin(raw_key):
        raise _incorrect(raw_key)
    admin_key = AdminKey.objects.filter(digest=secrets.digest(raw_key)).first()
    if admin_key is None or not secrets.matches(raw_key, admin_key.digest):
        raise _incorrect(raw_key)
    if admin_key.revoked_at is not None:
        raise InvalidAPIKey("This admin key has been revoked.")
    membership = (
        Membership.objects.select_related("user", "organization")
        .filter(user_id=admin_key.created_by_id, organization_id=admin_key.organization_id)
        .first()
    )
    # A membership newer than the key means its creator left and was let back in since: leaving
    # ended the key for good, as it ends the API keys they created.
    if (
        membership is None
        or not membership.user.is_active
        or membership.created_at > admin_key.created_at
    ):
        raise InvalidAPIKey("The person who created this admin key is no longer a member.")
    # One small write per admin request is fine at admin traffic; /v1 keys rate-limit theirs.
    AdminKey.objects.filter(pk=admin_key.pk).update(last_used_at=timezone.now())
    return AdminIdentity(admin_key.pk, admin_key.organization_id, membership)
