"""Thin async views for /v1: each adapts one serving function to HTTP."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from apps.catalog.selectors import catalog_model, catalog_models
from apps.gateway import errors
from apps.gateway.endpoint import endpoint
from apps.gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_body,
)
from apps.gateway.serving import chat, completions, embeddings
from apps.gateway.serving.common import CallContext


def _context(request: HttpRequest) -> CallContext:
    identity = request.identity  # type: ignore[attr-defined]
    return CallContext(
        request_id=request.request_id,  # type: ignore[attr-defined]
        organization_id=identity.organization_id,
        api_key_id=identity.key_id,
    )


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


@endpoint("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await chat.create(parse_body(request.body, ChatCompletionRequest), _context(request))


@endpoint("POST")
async def legacy_completions(request: HttpRequest) -> HttpResponseBase:
    return await completions.create(parse_body(request.body, CompletionRequest), _context(request))


@endpoint("POST")
async def embeddings_create(request: HttpRequest) -> HttpResponseBase:
    return await embeddings.create(parse_body(request.body, EmbeddingRequest), _context(request))
