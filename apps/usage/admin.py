from django.contrib import admin
from django.http import HttpRequest

from apps.usage.models import UsageDaily, UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "request_id", "organization", "model", "prompt_tokens", "completion_tokens",
        "cost_micros", "status", "latency_ms", "created_at",
    ]  # fmt: skip
    list_filter = ["endpoint", "status", "is_tester", "model"]
    search_fields = ["request_id", "organization__name", "end_user"]
    date_hierarchy = "created_at"


@admin.register(UsageDaily)
class UsageDailyAdmin(admin.ModelAdmin):
    list_display = [
        "day", "organization", "api_key", "model", "requests", "prompt_tokens",
        "completion_tokens", "cost_micros",
    ]  # fmt: skip
    list_filter = ["model"]
    search_fields = ["organization__name"]
    date_hierarchy = "day"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # derived from UsageRecords by usage_rollup_day

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
