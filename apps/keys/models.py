"""API keys: belong to an organization; stored only as a keyed digest."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.accounts.models import Organization


class APIKey(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    display = models.CharField(max_length=32, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Catalog ids this key may call; empty means every model.
    allowed_models = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "API key"
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.display})"

    def is_usable_at(self, moment: datetime) -> bool:
        """Not revoked and not expired at `moment`."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > moment


class AdminKey(models.Model):
    """An `sk-admin-…` key for the organization admin API; it never authenticates /v1.

    It acts as the person who created it, with their current role in the organization: a creator
    demoted to member can do only what a member can, and one who left makes the key useless.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="admin_keys"
    )
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    display = models.CharField(max_length=32, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "admin key"
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.display})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
