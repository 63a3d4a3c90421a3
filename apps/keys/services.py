"""Writes for API keys: create (the full key is returned exactly once) and revoke."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Organization, User
from apps.accounts.selectors import membership_for
from apps.keys import secrets
from apps.keys.cache import REVOKED, identity_cache_key
from apps.keys.models import APIKey


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
