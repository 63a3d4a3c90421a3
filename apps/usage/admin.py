from django.contrib import admin
from django.http import HttpRequest

from apps.usage.models import UsageDay, UsageMinute, UsageRecord, UsageRollupState


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "request_id", "organization", "model", "prompt_tokens", "completion_tokens",
        "cost_micros", "status", "latency_ms", "created_at",
    ]  # fmt: skip
    list_filter = ["endpoint", "status", "is_tester", "model"]
    search_fields = ["request_id", "organization__name", "end_user"]
    date_hierarchy = "created_at"


@admin.register(UsageMinute)
class UsageMinuteAdmin(admin.ModelAdmin):
    list_display = [
        "minute", "organization", "api_key", "endpoint", "model", "requests", "prompt_tokens",
        "cached_tokens", "completion_tokens", "cost_micros",
    ]  # fmt: skip
    list_filter = ["endpoint", "model"]
    search_fields = ["organization__name", "end_user"]
    date_hierarchy = "minute"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # derived from UsageRecords by apps/usage/rollups.py

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(UsageDay)
class UsageDayAdmin(admin.ModelAdmin):
    list_display = [
        "day_start", "organization", "api_key", "endpoint", "model", "requests", "prompt_tokens",
        "cached_tokens", "completion_tokens", "cost_micros",
    ]  # fmt: skip
    list_filter = ["endpoint", "model"]
    search_fields = ["organization__name", "end_user"]
    date_hierarchy = "day_start"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # derived from UsageMinute by apps/usage/rollups.py

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(UsageRollupState)
class UsageRollupStateAdmin(admin.ModelAdmin):
    list_display = ["rolled_up_to", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # moved only by the rollup task

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
