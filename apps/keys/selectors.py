"""Reads for API keys."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import Organization
from apps.keys.models import APIKey


def api_keys_for(*, organization: Organization) -> QuerySet[APIKey]:
    return APIKey.objects.filter(organization=organization).order_by("-created_at")
