"""The tester page. The work happens over its WebSocket (apps/tester/consumers.py)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.catalog.entries import Kind
from apps.catalog.selectors import catalog_models
from apps.dashboard.access import Scope, organization_view
from apps.site.public import api_base_url
from apps.tester.services import DEFAULT_MAX_TOKENS


@require_GET
@organization_view()
def tester(request: HttpRequest, scope: Scope) -> HttpResponse:
    models = [entry for entry in catalog_models() if entry.kind == Kind.CHAT]
    context = {
        "section": "tester",
        "organization": scope.organization,
        "membership": scope.membership,
        "is_manager": scope.is_manager,
        "models": models,
        "config": {
            "organizationId": scope.organization.pk,
            "baseUrl": api_base_url(request),
            "maxColumns": settings.TESTER_MAX_COLUMNS,
            "maxTokens": settings.TESTER_MAX_OUTPUT_TOKENS,
            "defaultMaxTokens": DEFAULT_MAX_TOKENS,
            "models": [
                {
                    "id": entry.id,
                    "input": entry.input_price_micros_per_mtok,
                    "output": entry.output_price_micros_per_mtok,
                }
                for entry in models
            ],
        },
    }
    return render(request, "tester/page.html", context)
