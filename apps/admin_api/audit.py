"""Writes to the audit log, and its reads for the dashboard."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.accounts.models import Organization
from apps.admin_api.models import AuditEvent


def audit_record(
    *,
    organization_id: int,
    action: str,
    actor_email: str,
    target: str,
    actor_key: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event; call it inside the transaction of the write it records."""
    return AuditEvent.objects.create(
        organization_id=organization_id,
        action=action,
        actor_email=actor_email,
        actor_key=actor_key,
        target=target,
        details=details or {},
    )


def audit_events_for(*, organization: Organization, limit: int = 50) -> QuerySet[AuditEvent]:
    """The organization's latest events, newest first."""
    return AuditEvent.objects.filter(organization=organization).order_by("-created_at", "-pk")[
        :limit
    ]
