"""The tester page. The work happens over its WebSocket (apps/tester/consumers.py)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.catalog.entries import CatalogEntry, Kind
from apps.catalog.selectors import catalog_models
from apps.dashboard.access import Scope, organization_view
from apps.protocol.audio import MAX_FILE_BYTES, MAX_SPEECH_INPUT_CHARACTERS
from apps.protocol.audio_languages import LANGUAGE_NAMES
from apps.site.public import api_base_url
from apps.tester.services import DEFAULT_MAX_TOKENS


@require_GET
@organization_view()
def tester(request: HttpRequest, scope: Scope) -> HttpResponse:
    entries = catalog_models()
    models = [entry for entry in entries if entry.kind == Kind.CHAT]
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
        "audio_config": _audio_config(entries, scope),
    }
    return render(request, "tester/page.html", context)


def _audio_config(entries: list[CatalogEntry], scope: Scope) -> dict[str, object]:
    """What the page's audio panel needs: the audio models, their voices and where to post."""
    organization_id = scope.organization.pk
    return {
        "transcriptionUrl": reverse("tester:transcription", args=(organization_id,)),
        "speechUrl": reverse("tester:speech", args=(organization_id,)),
        "maxFileBytes": MAX_FILE_BYTES,
        "maxInputCharacters": MAX_SPEECH_INPUT_CHARACTERS,
        "transcriptionModels": [
            {"id": entry.id, "multilingual": "translation" in entry.capabilities}
            for entry in entries
            if entry.kind == Kind.TRANSCRIPTION
        ],
        "speechModels": [
            {"id": entry.id, "voices": list(entry.voices)}
            for entry in entries
            if entry.kind == Kind.SPEECH
        ],
        "languages": sorted(LANGUAGE_NAMES.items(), key=lambda item: item[1]),
    }
