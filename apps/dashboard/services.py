"""Writes the dashboard composes from several apps."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from apps.accounts.models import Membership, Organization, User
from apps.accounts.services import membership_remove
from apps.billing.limits import spend_limit_set
from apps.keys.models import APIKey
from apps.keys.services import api_key_create, api_keys_revoke_created_by


@transaction.atomic
def api_key_create_with_limits(
    *,
    organization: Organization,
    created_by: User,
    name: str,
    allowed_models: Sequence[str] = (),
    monthly_limit_micros: int | None = None,
) -> tuple[APIKey, str]:
    """Mint a key with its allowed models and monthly spend limit, all or nothing."""
    api_key, raw_key = api_key_create(
        organization=organization,
        created_by=created_by,
        name=name,
        allowed_models=allowed_models,
    )
    if monthly_limit_micros is not None:
        spend_limit_set(
            organization=organization, api_key=api_key, monthly_limit_micros=monthly_limit_micros
        )
    return api_key, raw_key


@transaction.atomic
def membership_remove_with_keys(*, membership: Membership, removed_by: User) -> None:
    """Remove a member (or let one leave) and revoke the keys they created, all or nothing.

    A key must not outlive its creator's access to the organization.
    """
    membership_remove(membership=membership, removed_by=removed_by)
    api_keys_revoke_created_by(organization=membership.organization, user=membership.user)
