"""Rows and model instances as the admin API's objects (plain dicts its serializers render)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.accounts.models import Invitation, Membership, User
from apps.admin_api import ids
from apps.billing.models import CreditHold, LedgerEntry
from apps.keys.models import APIKey

_MICROS_PER_USD = 1_000_000


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def amount(micros: int) -> dict[str, Any]:
    """Micro-dollars as OpenAI's `{value, currency}`; the float's repr gives the µ$ back exactly."""
    return {"value": micros / _MICROS_PER_USD, "currency": "usd"}


def key_public_id(pk: int | None) -> str | None:
    return ids.public_id(ids.API_KEY, pk) if pk is not None else None


def _owner(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "type": "user",
        "user": {
            "id": ids.public_id(ids.USER, user.pk),
            "email": user.email,
            "name": user.full_name or None,
        },
    }


def api_key(key: APIKey, *, monthly_limit_micros: int | None) -> dict[str, Any]:
    return {
        "object": "organization.api_key",
        "id": ids.public_id(ids.API_KEY, key.pk),
        "name": key.name,
        "redacted_value": key.display,
        "created_at": unix(key.created_at),
        "last_used_at": unix(key.last_used_at),
        "allowed_models": list(key.allowed_models or []),
        "monthly_spend_limit": amount(monthly_limit_micros)
        if monthly_limit_micros is not None
        else None,
        "owner": _owner(key.created_by),
    }


def user(membership: Membership) -> dict[str, Any]:
    return {
        "object": "organization.user",
        "id": ids.public_id(ids.USER, membership.user_id),
        "name": membership.user.full_name or None,
        "email": membership.user.email,
        "role": membership.role,
        "added_at": unix(membership.created_at),
    }


def _invite_status(invitation: Invitation, now: datetime) -> str:
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    return "pending" if invitation.expires_at > now else "expired"


def invite(invitation: Invitation, *, now: datetime) -> dict[str, Any]:
    return {
        "object": "organization.invite",
        "id": ids.public_id(ids.INVITE, invitation.pk),
        "email": invitation.email,
        "role": invitation.role,
        "status": _invite_status(invitation, now),
        "created_at": unix(invitation.created_at),
        "expires_at": unix(invitation.expires_at),
        "accepted_at": unix(invitation.accepted_at),
    }


def deleted(kind: str, public_id: str) -> dict[str, Any]:
    return {"object": f"{kind}.deleted", "id": public_id, "deleted": True}


def hold(credit_hold: CreditHold) -> dict[str, Any]:
    return {
        "object": "organization.credit_hold",
        "id": credit_hold.request_id,
        "api_key_id": key_public_id(credit_hold.api_key_id),
        "amount": amount(credit_hold.amount_micros),
        "created_at": unix(credit_hold.created_at),
        "expires_at": unix(credit_hold.expires_at),
    }


def grant(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "object": "organization.credit_grant",
        "id": f"credit_{entry.pk}",
        "kind": entry.kind,
        "amount": amount(entry.amount_micros),
        "description": entry.description,
        "created_at": unix(entry.created_at),
    }
