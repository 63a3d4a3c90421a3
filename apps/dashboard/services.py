"""Writes the dashboard composes from several apps."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from apps.accounts.models import Membership, Organization, User
from apps.accounts.services import membership_remove
from apps.admin_api.audit import audit_record
from apps.billing.limits import spend_limit_set
from apps.keys.models import AdminKey, APIKey
from apps.keys.services import (
    admin_key_create,
    admin_key_revoke,
    api_key_create,
    api_keys_revoke_created_by,
)


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


@transaction.atomic
def admin_key_create_audited(
    *, organization: Organization, created_by: User, name: str
) -> tuple[AdminKey, str]:
    """Mint an admin key (owners only) and record it in the audit log, all or nothing."""
    admin_key, raw_key = admin_key_create(
        organization=organization, created_by=created_by, name=name
    )
    audit_record(
        organization_id=organization.pk,
        action="admin_key.created",
        actor_email=created_by.email,
        target=admin_key.display,
        details={"name": admin_key.name},
    )
    return admin_key, raw_key


@transaction.atomic
def admin_key_revoke_audited(*, admin_key: AdminKey, revoked_by: User) -> None:
    """Revoke an admin key (owners only) and record it in the audit log."""
    admin_key_revoke(admin_key=admin_key, revoked_by=revoked_by)
    audit_record(
        organization_id=admin_key.organization_id,
        action="admin_key.revoked",
        actor_email=revoked_by.email,
        target=admin_key.display,
        details={"name": admin_key.name},
    )
