from django.contrib import admin
from django.http import HttpRequest

from apps.keys.models import APIKey


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "display", "organization", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "display", "organization__name"]
    readonly_fields = ["digest", "display", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are minted by the keys service (dashboard, create_api_key), which shows the key once.
        return False
