"""Billing in the admin: money records are read-only; credit moves only through services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.billing.ledger import credit_adjust
from apps.billing.models import (
    CreditAccount,
    CreditHold,
    LedgerEntry,
    SpendLimit,
    StripeEvent,
    TopUp,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyAdmin):
    list_display = ["organization", "balance_micros", "held_micros", "low_balance_notified_micros"]
    search_fields = ["organization__name"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Staff may add an adjustment (through credit_adjust); nothing here is ever edited."""

    list_display = ["created_at", "organization", "kind", "amount_micros", "description"]
    list_filter = ["kind"]
    search_fields = ["organization__name", "external_id", "description"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["organization"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("billing.add_ledgerentry"))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["organization", "amount_micros", "description"]
        return super().get_fields(request, obj)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            form.base_fields["description"].required = True  # an adjustment says why
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        entry = credit_adjust(
            organization=obj.organization,
            amount_micros=obj.amount_micros,
            description=f"{obj.description} (by {request.user})",
        )
        obj.pk = entry.pk


@admin.register(CreditHold)
class CreditHoldAdmin(ReadOnlyAdmin):
    list_display = ["request_id", "organization", "amount_micros", "status", "expires_at"]
    list_filter = ["status"]
    search_fields = ["request_id", "organization__name"]


@admin.register(SpendLimit)
class SpendLimitAdmin(ReadOnlyAdmin):
    list_display = [
        "organization", "api_key", "monthly_limit_micros", "month", "spent_micros", "held_micros",
    ]  # fmt: skip
    search_fields = ["organization__name"]


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "amount_micros", "status", "refunded_micros"]
    list_filter = ["status"]
    search_fields = ["organization__name", "stripe_session_id", "stripe_payment_intent_id"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "event_id", "type"]
    list_filter = ["type"]
    search_fields = ["event_id"]
