"""One UsageRecord per API call: what billing prices and what the dashboard shows."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.accounts.models import Organization
from apps.keys.models import APIKey


class UsageRecord(models.Model):
    request_id = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="usage_records"
    )
    api_key = models.ForeignKey(
        APIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_records"
    )
    endpoint = models.CharField(max_length=32)  # "chat.completions", "completions", "embeddings"
    model = models.CharField(max_length=128)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)  # part of prompt_tokens
    reasoning_tokens = models.PositiveIntegerField(default=0)  # part of completion_tokens
    # Who answered: the provider ("local", "openai", …), which of the model's routes (its prices
    # were charged), and the upstream's own names for the model and the call.
    provider = models.CharField(max_length=32, blank=True)
    route_index = models.PositiveSmallIntegerField(default=0)
    upstream_model = models.CharField(max_length=128, blank=True)
    upstream_request_id = models.CharField(max_length=128, blank=True)
    cost_micros = models.BigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    status = models.PositiveSmallIntegerField()  # the HTTP status the caller saw
    error_code = models.CharField(max_length=64, blank=True)
    is_stream = models.BooleanField(default=False)
    is_client_disconnect = models.BooleanField(default=False)
    is_tester = models.BooleanField(default=False)  # in-browser tester traffic
    end_user = models.CharField(max_length=256, blank=True)  # the request's `user` field
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["api_key", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.prompt_tokens}+{self.completion_tokens}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageDaily(models.Model):
    """Calls per organization, key, model and UTC day: recomputed from UsageRecords by a task."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="usage_daily"
    )
    # No database constraint: a deleted key's rows keep its id until their day is recomputed.
    api_key = models.ForeignKey(
        APIKey,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    model = models.CharField(max_length=128)
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "usage daily"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "model", "day"],
                nulls_distinct=False,
                name="one_rollup_per_org_key_model_day",
            )
        ]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.organization_id} {self.model}: {self.requests} calls"
