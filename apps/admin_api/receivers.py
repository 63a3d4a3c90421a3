"""Audit rows for writes made in lower apps, which cannot import this one (see
apps.accounts.signals)."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import Invitation, Membership
from apps.admin_api import ids
from apps.admin_api.audit import audit_record


def invitation_accepted(*, invitation: Invitation, membership: Membership, **_: Any) -> None:
    """The invitee joined: recorded as their own write, in the acceptance's transaction."""
    audit_record(
        organization_id=membership.organization_id,
        action="invite.accepted",
        actor_email=membership.user.email,
        target=ids.public_id(ids.USER, membership.user_id),
        details={"invite": ids.public_id(ids.INVITE, invitation.pk), "role": membership.role},
    )
