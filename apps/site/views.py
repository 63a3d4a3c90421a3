"""The public pages: landing, pricing and docs. Server-rendered; the model list is the catalog."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.billing.pricing import cents_to_micros
from apps.catalog.entries import Kind
from apps.catalog.selectors import catalog_models
from apps.site.public import api_base_url


def _context(request: HttpRequest, page: str) -> dict[str, object]:
    models = catalog_models()
    return {
        "page": page,
        "base_url": api_base_url(request),
        "models": models,
        "chat_models": [entry for entry in models if entry.kind == Kind.CHAT],
        "example_model": next(
            (entry.id for entry in models if entry.kind == Kind.CHAT), "plugsky-nano"
        ),
        "embedding_model": next(
            (entry.id for entry in models if entry.kind == Kind.EMBEDDING), "plugsky-embed"
        ),
        "topup_min_micros": cents_to_micros(settings.BILLING_TOPUP_MIN_CENTS),
        "topup_max_micros": cents_to_micros(settings.BILLING_TOPUP_MAX_CENTS),
    }


@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "site/landing.html", _context(request, "landing"))


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    return render(request, "site/pricing.html", _context(request, "pricing"))


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    return render(request, "site/docs.html", _context(request, "docs"))
