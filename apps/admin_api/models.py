"""The audit log of the organization's administrative writes: append-only (a trigger refuses more).

Rows name their actor and target by value, not by foreign key: a deleted user or key must not
rewrite history, and an UPDATE from `on_delete=SET_NULL` would hit the append-only trigger.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.accounts.models import Organization


class AuditEvent(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="audit_events"
    )
    action = models.CharField(max_length=64)  # e.g. "api_key.created", "user.updated"
    actor_email = models.EmailField()
    # The admin key the change came through ("sk-admin-…abcd"); empty: the dashboard.
    actor_key = models.CharField(max_length=32, blank=True)
    target = models.CharField(max_length=64)  # the public id, e.g. "key_12", "user_3"
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_email} {self.action} {self.target}"
