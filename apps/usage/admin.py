from django.contrib import admin

from apps.usage.models import UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "request_id", "organization", "model", "prompt_tokens", "completion_tokens",
        "cost_micros", "status", "latency_ms", "created_at",
    ]  # fmt: skip
    list_filter = ["endpoint", "status", "is_tester", "model"]
    search_fields = ["request_id", "organization__name", "end_user"]
    date_hierarchy = "created_at"
