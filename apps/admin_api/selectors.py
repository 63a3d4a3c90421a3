"""Reads of the admin API, every one scoped to the admin key's organization."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from apps.accounts.models import Invitation, Membership
from apps.billing.models import SpendLimit
from apps.keys.models import APIKey


def api_keys_of(*, organization_id: int) -> QuerySet[APIKey]:
    """The organization's usable keys (revoked ones are gone from the API, as deleted)."""
    return APIKey.objects.filter(
        organization_id=organization_id, revoked_at__isnull=True
    ).select_related("created_by")


def api_key_of(*, organization_id: int, pk: int) -> APIKey | None:
    return api_keys_of(organization_id=organization_id).filter(pk=pk).first()


def key_limits_micros(*, api_key_ids: Iterable[int]) -> dict[int, int]:
    """The monthly spend limit of each key that has one."""
    rows = SpendLimit.objects.filter(api_key_id__in=list(api_key_ids)).values_list(
        "api_key_id", "monthly_limit_micros"
    )
    return dict(rows)


def memberships_of(*, organization_id: int) -> QuerySet[Membership]:
    return Membership.objects.filter(organization_id=organization_id).select_related("user")


def membership_of(*, organization_id: int, user_pk: int) -> Membership | None:
    return memberships_of(organization_id=organization_id).filter(user_id=user_pk).first()


def invitations_of(*, organization_id: int) -> QuerySet[Invitation]:
    return Invitation.objects.filter(organization_id=organization_id)


def invitation_of(*, organization_id: int, pk: int) -> Invitation | None:
    return invitations_of(organization_id=organization_id).filter(pk=pk).first()
