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


class UsageTotals(models.Model):
    """What a rollup row counts, for one group the usage endpoints can filter or group by."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # No database constraint: a deleted key's rows keep its id until their period is recomputed.
    api_key = models.ForeignKey(
        APIKey,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    endpoint = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    end_user = models.CharField(max_length=256, blank=True)
    requests = models.PositiveIntegerField(default=0)
    # Tokens; for audio, prompt_tokens holds seconds (transcription) or characters (speech).
    prompt_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageMinute(UsageTotals):
    """Calls per organization, key, endpoint, model, end user and UTC minute.

    Recomputed from UsageRecords by the rollup task for the minutes before the watermark
    (UsageRollupState); readers sum these up to it and the records themselves after it, so every
    figure is exact without a write on the request path. One row per group the usage endpoints can
    filter or group by, so 1m, 1h and 1d buckets all come from the same rows.
    """

    minute = models.DateTimeField()  # the start of the UTC minute

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "endpoint", "model", "end_user", "minute"],
                nulls_distinct=False,
                name="one_rollup_per_usage_group_minute",
            )
        ]
        indexes = [
            models.Index(fields=["organization", "minute"]),
            models.Index(fields=["minute"]),
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.organization_id} {self.model}: {self.requests}"


class UsageDay(UsageTotals):
    """UsageMinute summed per UTC day, for the days the watermark has passed: what day buckets read.

    Recomputed from the day's minutes whenever any of them is, in the same transaction.
    """

    day_start = models.DateTimeField()  # midnight UTC

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "endpoint", "model", "end_user", "day_start"],
                nulls_distinct=False,
                name="one_rollup_per_usage_group_day",
            )
        ]
        indexes = [
            models.Index(fields=["organization", "day_start"]),
            models.Index(fields=["day_start"]),
        ]

    def __str__(self) -> str:
        return f"{self.day_start:%Y-%m-%d} {self.organization_id} {self.model}: {self.requests}"


class UsageRollupState(models.Model):
    """The rollup watermark: every minute before `rolled_up_to` is in UsageMinute, and every day
    before its midnight in UsageDay.

    One row (pk=1). The task moves it forward only, under a row lock, so two runs never interleave.
    """

    rolled_up_to = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"usage rolled up to {self.rolled_up_to:%Y-%m-%d %H:%M} UTC"
