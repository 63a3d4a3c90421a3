"""Prepaid credit: an append-only ledger, a cached balance, holds, spend limits, Stripe records.

All amounts are integer micro-dollars (`*_micros`); see apps/billing/pricing.py.
Invariants (checked by `manage.py billing_reconcile`):
- `CreditAccount.balance_micros == sum(LedgerEntry.amount_micros)` for the organization;
- `CreditAccount.held_micros == sum(CreditHold.amount_micros)` of its active holds.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Organization
from apps.keys.models import APIKey
from apps.usage.models import UsageRecord


class CreditAccount(models.Model):
    """The organization's cached balance and the credit reserved by in-flight calls."""

    organization = models.OneToOneField(
        Organization, on_delete=models.PROTECT, primary_key=True, related_name="credit_account"
    )
    balance_micros = models.BigIntegerField(default=0)
    held_micros = models.BigIntegerField(default=0)
    # The deepest LOW_BALANCE_THRESHOLDS_MICROS value already notified; None when re-armed.
    low_balance_notified_micros = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held_micros__gte=0), name="held_not_negative")
        ]

    def __str__(self) -> str:
        return f"{self.organization}: {self.balance_micros} µ$ ({self.held_micros} held)"

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.held_micros


class EntryKind(models.TextChoices):
    TRIAL_GRANT = "trial_grant", "Trial grant"
    TOPUP = "topup", "Top-up"
    USAGE = "usage", "Usage"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"


class LedgerEntry(models.Model):
    """One movement of credit. Rows are never updated or deleted (a database trigger refuses it)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount_micros = models.BigIntegerField()  # positive credits, negative debits
    # The idempotency key of entries that come from outside: a Checkout session, a dispute …
    external_id = models.CharField(max_length=255, blank=True)
    usage_record = models.OneToOneField(
        UsageRecord, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entry"
    )
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["organization", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(kind="trial_grant"),
                name="one_trial_grant_per_org",
            ),
            models.UniqueConstraint(
                fields=["kind", "external_id"],
                condition=~Q(external_id=""),
                name="one_entry_per_external_id",
            ),
            models.CheckConstraint(
                condition=Q(kind="usage", usage_record__isnull=False)
                | (~Q(kind="usage") & Q(usage_record__isnull=True)),
                name="usage_entries_have_a_record",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_micros} µ$ ({self.organization_id})"


class HoldStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SETTLED = "settled", "Settled"
    EXPIRED = "expired", "Expired"  # released by holds_release_stale (the process died)


class CreditHold(models.Model):
    """The worst-case cost of one in-flight call, reserved against the balance."""

    request_id = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey(
        APIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    amount_micros = models.BigIntegerField()
    status = models.CharField(max_length=8, choices=HoldStatus.choices, default=HoldStatus.ACTIVE)
    # The spend limits this hold was counted against (settlement releases exactly these).
    org_limit = models.ForeignKey(
        "SpendLimit", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    key_limit = models.ForeignKey(
        "SpendLimit", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["expires_at"], condition=Q(status="active"), name="active_hold_expiry"
            )
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_micros__gte=0), name="hold_not_negative")
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.amount_micros} µ$ {self.status}"


class SpendLimit(models.Model):
    """A monthly cap on spend for a whole organization (api_key empty) or for one API key.

    `spent_micros` is the settled spend in `month` (the first day of a UTC calendar month) and
    `held_micros` the worst cases of calls in flight; both are kept by conditional UPDATEs so that
    `spent + held` never exceeds the limit. A row whose `month` is past counts as nothing spent.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="spend_limits"
    )
    api_key = models.ForeignKey(
        APIKey, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    monthly_limit_micros = models.BigIntegerField()
    month = models.DateField()
    spent_micros = models.BigIntegerField(default=0)
    held_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held_micros__gte=0), name="limit_held_not_negative"),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(api_key__isnull=True),
                name="one_limit_per_org",
            ),
            models.UniqueConstraint(
                fields=["api_key"], condition=Q(api_key__isnull=False), name="one_limit_per_key"
            ),
            models.CheckConstraint(
                condition=Q(monthly_limit_micros__gte=0), name="limit_not_negative"
            ),
        ]

    def __str__(self) -> str:
        scope = f"key {self.api_key_id}" if self.api_key_id else "organization"
        return f"{self.organization_id} {scope}: {self.monthly_limit_micros} µ$ / month"


class TopUpStatus(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"  # Stripe refused to open the session


class TopUp(models.Model):
    """A Stripe Checkout session bought for credit; maps later refunds/disputes to the tenant."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    amount_micros = models.BigIntegerField()
    stripe_session_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    status = models.CharField(max_length=10, choices=TopUpStatus.choices, default=TopUpStatus.OPEN)
    refunded_micros = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_session_id"],
                condition=~Q(stripe_session_id=""),
                name="one_topup_per_checkout_session",
            )
        ]

    def __str__(self) -> str:
        return f"top-up {self.pk} {self.amount_micros} µ$ {self.status}"


class StripeEvent(models.Model):
    """Every verified webhook event, stored before it is acted on (unique on Stripe's id)."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"
