"""Writes of the admin API: the same services the dashboard calls, each audited in its own
transaction, with the same rules (members cannot manage billing or members)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction

from apps.accounts.models import Invitation, Membership, Role
from apps.accounts.services import (
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_role_change,
)
from apps.admin_api import ids
from apps.admin_api.audit import audit_record
from apps.admin_api.errors import forbidden
from apps.billing.limits import spend_limit_remove, spend_limit_set
from apps.keys.admin_authentication import AdminIdentity
from apps.keys.models import AdminKey, APIKey
from apps.keys.services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    api_keys_revoke_created_by,
)

# "Leave the limit as it is", distinct from None ("no limit").
UNCHANGED: Any = object()


def _audit(identity: AdminIdentity, action: str, target: str, **details: Any) -> None:
    audit_record(
        organization_id=identity.organization_id,
        action=action,
        actor_email=identity.membership.user.email,
        actor_key=_key_display(identity),
        target=target,
        details=details,
    )


def _key_display(identity: AdminIdentity) -> str:
    return AdminKey.objects.filter(pk=identity.key_id).values_list("display", flat=True).get()


def _require_key_manager(identity: AdminIdentity, api_key: APIKey) -> None:
    """The dashboard's rule for a key's settings: managers, or the person who created it."""
    if not identity.is_manager and api_key.created_by_id != identity.membership.user_id:
        raise forbidden("Only owners, admins or the key's creator can change or revoke it.")


@transaction.atomic
def api_key_create_audited(
    *,
    identity: AdminIdentity,
    name: str,
    allowed_models: Sequence[str],
    monthly_limit_micros: int | None,
) -> tuple[APIKey, str]:
    """Mint a key with its allowed models and monthly spend limit, all or nothing."""
    organization = identity.membership.organization
    api_key, raw_key = api_key_create(
        organization=organization,
        created_by=identity.membership.user,
        name=name,
        allowed_models=allowed_models,
    )
    if monthly_limit_micros is not None:
        spend_limit_set(
            organization=organization, api_key=api_key, monthly_limit_micros=monthly_limit_micros
        )
    _audit(
        identity,
        "api_key.created",
        ids.public_id(ids.API_KEY, api_key.pk),
        name=api_key.name,
        allowed_models=api_key.allowed_models,
        monthly_limit_micros=monthly_limit_micros,
    )
    return api_key, raw_key


@transaction.atomic
def api_key_update_audited(
    *,
    identity: AdminIdentity,
    api_key: APIKey,
    name: str | None = None,
    allowed_models: Sequence[str] | None = None,
    monthly_limit_micros: int | None = UNCHANGED,
) -> None:
    """Rename a key, change its allowed models or its monthly spend limit (None removes it)."""
    _require_key_manager(identity, api_key)
    api_key_update(api_key=api_key, name=name, allowed_models=allowed_models)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = api_key.name
    if allowed_models is not None:
        changes["allowed_models"] = api_key.allowed_models
    if monthly_limit_micros is not UNCHANGED:
        _key_limit_apply(api_key, monthly_limit_micros)
        changes["monthly_limit_micros"] = monthly_limit_micros
    _audit(identity, "api_key.updated", ids.public_id(ids.API_KEY, api_key.pk), **changes)


def _key_limit_apply(api_key: APIKey, monthly_limit_micros: int | None) -> None:
    organization = api_key.organization
    if monthly_limit_micros is None:
        spend_limit_remove(organization=organization, api_key=api_key)
    else:
        spend_limit_set(
            organization=organization, api_key=api_key, monthly_limit_micros=monthly_limit_micros
        )


@transaction.atomic
def api_key_revoke_audited(*, identity: AdminIdentity, api_key: APIKey) -> None:
    """Revoke a key: the next call with it gets a 401, in every process."""
    _require_key_manager(identity, api_key)
    api_key_revoke(api_key=api_key, revoked_by=identity.membership.user)
    _audit(identity, "api_key.deleted", ids.public_id(ids.API_KEY, api_key.pk))


@transaction.atomic
def member_role_change_audited(
    *, identity: AdminIdentity, membership: Membership, role: Role
) -> None:
    previous = membership.role
    membership_role_change(membership=membership, role=role, changed_by=identity.membership.user)
    target = ids.public_id(ids.USER, membership.user_id)
    _audit(identity, "user.updated", target, role=role.value, previous_role=previous)


@transaction.atomic
def member_remove_audited(*, identity: AdminIdentity, membership: Membership) -> None:
    """Remove a member and revoke the keys they created here (a key must not outlive access)."""
    membership_remove(membership=membership, removed_by=identity.membership.user)
    revoked = api_keys_revoke_created_by(organization=membership.organization, user=membership.user)
    target = ids.public_id(ids.USER, membership.user_id)
    _audit(identity, "user.deleted", target, email=membership.user.email, keys_revoked=revoked)


@transaction.atomic
def invite_create_audited(
    *, identity: AdminIdentity, email: str, role: Role, base_url: str
) -> Invitation:
    invitation = invitation_create(
        organization=identity.membership.organization,
        email=email,
        role=role,
        invited_by=identity.membership.user,
        base_url=base_url,
    )
    target = ids.public_id(ids.INVITE, invitation.pk)
    _audit(identity, "invite.sent", target, email=invitation.email, role=invitation.role)
    return invitation


@transaction.atomic
def invite_revoke_audited(*, identity: AdminIdentity, invitation: Invitation) -> None:
    invitation_revoke(invitation=invitation, revoked_by=identity.membership.user)
    invitation.refresh_from_db(fields=["revoked_at"])
    target = ids.public_id(ids.INVITE, invitation.pk)
    _audit(identity, "invite.deleted", target, email=invitation.email)
