"""Thin async views for /v1: each adapts one serving function to HTTP."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from apps.catalog.selectors import catalog_model, catalog_models
from apps.gateway import errors
from apps.gateway.endpoint import endpoint


@endpoint("GET")
async def models_list(request: HttpRequest) -> HttpResponseBase:
    data = [entry.public_fields() for entry in catalog_models()]
    return JsonResponse({"object": "list", "data": data})


@endpoint("GET")
async def model_retrieve(request: HttpRequest, model_id: str) -> HttpResponseBase:
    entry = catalog_model(model_id)
    if entry is None:
        raise errors.model_not_found(model_id)
    return JsonResponse(entry.public_fields())
