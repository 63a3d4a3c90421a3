"""Writes for API keys and admin keys: create (the full key is returned exactly once), revoke."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Organization, Role, User
from apps.accounts.selectors import membership_for
from apps.keys import secrets
from apps.keys.cache import REVOKED, identity_cache_key
from apps.keys.models import AdminKey, APIKey


def api_key_create(
    *,
    organization: Organization,
    created_by: User | None,
    name: str,
    expires_at: datetime | None = None,
    allowed_models: Sequence[str] = (),
) -> tuple[APIKey, str]:
    """Mint a key for the organization; returns the row and the full key (never stored).

    `allowed_models` (catalog ids or aliases) limits the key to those models; empty: every model.
    """
    if (
        created_by is not None
        and membership_for(user=created_by, organization=organization) is None
    ):
        raise PermissionDenied("Only members of an organization can create its API keys.")
    allowed = _canonical_models(allowed_models)
    raw_key = secrets.generate()
    api_key = APIKey.objects.create(
        organization=organization,
        name=name.strip() or "Secret key",
        digest=secrets.digest(raw_key),
        display=secrets.display_form(raw_key),
        created_by=created_by,
        expires_at=expires_at,
        allowed_models=allowed,
    )
    return api_key, raw_key


def _canonical_models(model_ids: Sequence[str]) -> list[str]:
    """Catalog ids for ids or aliases, deduplicated in order; ValueError for an unknown one."""
    from apps.catalog.selectors import catalog_model

    canonical: list[str] = []
    for model_id in model_ids:
        entry = catalog_model(model_id)
        if entry is None:
            raise ValueError(f"Unknown model: {model_id}")
        if entry.id not in canonical:
            canonical.append(entry.id)
    return canonical


def api_key_update(
    *, api_key: APIKey, name: str | None = None, allowed_models: Sequence[str] | None = None
) -> None:
    """Rename a key or change its allowed models (None: unchanged); callers check who may."""
    fields: dict[str, object] = {}
    if name is not None:
        fields["name"] = name.strip()[:100] or api_key.name
    if allowed_models is not None:
        fields["allowed_models"] = _canonical_models(allowed_models)
    if not fields:
        return
    APIKey.objects.filter(pk=api_key.pk).update(**fields)
    for field, value in fields.items():
        setattr(api_key, field, value)
    # The cached identity carries the allowed models: drop it once the change is visible.
    digest = api_key.digest
    transaction.on_commit(lambda: cache.delete(identity_cache_key(digest)))


def api_key_revoke(*, api_key: APIKey, revoked_by: User | None) -> None:
    """Revoke a key; the very next request with it fails, in every process."""
    if revoked_by is not None:
        membership = membership_for(user=revoked_by, organization=api_key.organization)
        allowed = membership is not None and (
            membership.is_manager or api_key.created_by_id == revoked_by.pk
        )
        if not allowed:
            raise PermissionDenied("Only owners, admins or the key's creator can revoke it.")
    with transaction.atomic():
        APIKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    # A tombstone, not a delete: request handlers fill the cache with add() (set-if-absent), so
    # a handler that read the row just before the revoke cannot put the live key back.
    cache.set(identity_cache_key(api_key.digest), REVOKED, timeout=None)
    api_key.refresh_from_db(fields=["revoked_at"])


def api_keys_revoke_created_by(*, organization: Organization, user: User) -> int:
    """Revoke the live keys `user` created in `organization` (their access ended); how many."""
    keys = APIKey.objects.filter(
        organization=organization, created_by=user, revoked_at__isnull=True
    ).order_by("pk")
    revoked = 0
    for api_key in keys:
        api_key_revoke(api_key=api_key, revoked_by=None)
        revoked += 1
    return revoked


def admin_key_create(
    *, organization: Organization, created_by: User, name: str
) -> tuple[AdminKey, str]:
    """Mint an admin key (owners only); returns the row and the full key (never stored)."""
    membership = membership_for(user=created_by, organization=organization)
    if membership is None or membership.role != Role.OWNER:
        raise PermissionDenied("Only owners of an organization can create its admin keys.")
    raw_key = secrets.generate_admin()
    admin_key = AdminKey.objects.create(
        organization=organization,
        name=name.strip()[:100] or "Admin key",
        digest=secrets.digest(raw_key),
        display=secrets.display_form(raw_key),
        created_by=created_by,
    )
    return admin_key, raw_key


def admin_key_revoke(*, admin_key: AdminKey, revoked_by: User) -> None:
    """Revoke an admin key (owners only); admin keys are not cached, so it ends at once."""
    membership = membership_for(user=revoked_by, organization=admin_key.organization)
    if membership is None or membership.role != Role.OWNER:
        raise PermissionDenied("Only owners of an organization can revoke its admin keys.")
    AdminKey.objects.filter(pk=admin_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    admin_key.refresh_from_db(fields=["revoked_at"])
