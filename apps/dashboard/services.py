"""Writes the dashboard composes from several apps, each audited in the transaction of its write.

The audit rows are the admin API's (apps/admin_api/audit.py), with the same actions and targets,
so the organization page shows one history whichever way a change was made. A denied write raises
inside the transaction, so it leaves no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction

from apps.accounts.models import Invitation, Membership, Organization, Role, User
from apps.accounts.services import (
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_role_change,
    organization_rename,
)
from apps.admin_api import ids
from apps.admin_api.audit import audit_record
from apps.billing.limits import spend_limit_set
from apps.keys.models import AdminKey, APIKey
from apps.keys.services import (
    admin_key_create,
    admin_key_revoke,
    api_key_create,
    api_key_revoke,
    api_keys_revoke_created_by,
)


def _audit(*, organization_id: int, actor: User, action: str, target: str, **details: Any) -> None:
    audit_record(
        organization_id=organization_id,
        action=action,
        actor_email=actor.email,
        target=target,
        details=details,
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
    _audit(
        organization_id=organization.pk,
        actor=created_by,
        action="api_key.created",
        target=ids.public_id(ids.API_KEY, api_key.pk),
        name=api_key.name,
        allowed_models=api_key.allowed_models,
        monthly_limit_micros=monthly_limit_micros,
    )
    return api_key, raw_key


@transaction.atomic
def api_key_revoke_audited(*, api_key: APIKey, revoked_by: User) -> None:
    """Revoke a key (managers, or its creator); revoking a revoked key records nothing."""
    was_active = api_key.revoked_at is None
    api_key_revoke(api_key=api_key, revoked_by=revoked_by)
    if was_active:
        _audit(
            organization_id=api_key.organization_id,
            actor=revoked_by,
            action="api_key.deleted",
            target=ids.public_id(ids.API_KEY, api_key.pk),
            name=api_key.name,
        )


@transaction.atomic
def membership_remove_with_keys(*, membership: Membership, removed_by: User) -> None:
    """Remove a member (or let one leave) and revoke the keys they created, all or nothing.

    A key must not outlive its creator's access to the organization.
    """
    membership_remove(membership=membership, removed_by=removed_by)
    revoked = api_keys_revoke_created_by(organization=membership.organization, user=membership.user)
    _audit(
        organization_id=membership.organization_id,
        actor=removed_by,
        action="user.deleted",
        target=ids.public_id(ids.USER, membership.user_id),
        email=membership.user.email,
        keys_revoked=revoked,
        left=membership.user_id == removed_by.pk,
    )


@transaction.atomic
def membership_role_change_audited(*, membership: Membership, role: Role, changed_by: User) -> None:
    previous = membership.role
    membership_role_change(membership=membership, role=role, changed_by=changed_by)
    _audit(
        organization_id=membership.organization_id,
        actor=changed_by,
        action="user.updated",
        target=ids.public_id(ids.USER, membership.user_id),
        role=role.value,
        previous_role=previous,
    )


@transaction.atomic
def invitation_create_audited(
    *, organization: Organization, email: str, role: Role, invited_by: User, base_url: str
) -> Invitation:
    """Invite someone (managers); the email goes out when the transaction commits."""
    invitation = invitation_create(
        organization=organization, email=email, role=role, invited_by=invited_by,
        base_url=base_url,
    )  # fmt: skip
    _audit(
        organization_id=organization.pk,
        actor=invited_by,
        action="invite.sent",
        target=ids.public_id(ids.INVITE, invitation.pk),
        email=invitation.email,
        role=invitation.role,
    )
    return invitation


@transaction.atomic
def invitation_revoke_audited(*, invitation: Invitation, revoked_by: User) -> None:
    """Withdraw an invitation (managers); one no longer open changes nothing and records nothing."""
    was_open = invitation.accepted_at is None and invitation.revoked_at is None
    invitation_revoke(invitation=invitation, revoked_by=revoked_by)
    if was_open:
        _audit(
            organization_id=invitation.organization_id,
            actor=revoked_by,
            action="invite.deleted",
            target=ids.public_id(ids.INVITE, invitation.pk),
            email=invitation.email,
        )


@transaction.atomic
def organization_rename_audited(*, organization: Organization, name: str, renamed_by: User) -> None:
    previous = organization.name
    organization_rename(organization=organization, name=name, renamed_by=renamed_by)
    _audit(
        organization_id=organization.pk,
        actor=renamed_by,
        action="organization.updated",
        target=f"org_{organization.pk}",
        name=organization.name,
        previous_name=previous,
    )


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
