"""Thin async views for /v1: each adapts one serving function to HTTP."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from apps.billing.pricing import COST_HEADER, cost_header_value
from apps.catalog.selectors import catalog_model, catalog_models
from apps.gateway import sse
from apps.gateway.endpoint import endpoint
from apps.gateway.serving import chat, completions, embeddings
from apps.gateway.serving.common import CallContext, ChunkStream, Priced, model_access_check
from apps.protocol import errors
from apps.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_body,
)


def _context(request: HttpRequest, model_id: str) -> CallContext:
    identity = request.identity  # type: ignore[attr-defined]
    model_access_check(model_id, identity=identity)
    return CallContext(
        request_id=request.request_id,  # type: ignore[attr-defined]
        organization_id=identity.organization_id,
        api_key_id=identity.key_id,
    )


def _http_response(result: Priced | ChunkStream) -> HttpResponseBase:
    """JSON with the charged cost in `x-plugsky-cost`, or the stream as server-sent events.

    A stream stays a StreamingHttpResponse over its own iterator: the endpoint adapter wraps
    that to give the call's admission slots back when the stream ends.
    """
    if isinstance(result, Priced):
        response = JsonResponse(result.body)
        response[COST_HEADER] = cost_header_value(result.cost_micros)
        return response
    return sse.streaming_response(result)


@endpoint("GET")
async def models_list(request: HttpRequest) -> HttpResponseBase:
    identity = request.identity  # type: ignore[attr-defined]
    data = [entry.public_fields() for entry in catalog_models() if identity.may_use(entry.id)]
    return JsonResponse({"object": "list", "data": data})


@endpoint("GET")
async def model_retrieve(request: HttpRequest, model_id: str) -> HttpResponseBase:
    entry = catalog_model(model_id)
    if entry is None:
        raise errors.model_not_found(model_id)
    model_access_check(model_id, identity=request.identity)  # type: ignore[attr-defined]
    return JsonResponse(entry.public_fields())


@endpoint("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    body = parse_body(request.body, ChatCompletionRequest, content_type=request.content_type)
    return _http_response(await chat.create(body, _context(request, body.model)))


@endpoint("POST")
async def legacy_completions(request: HttpRequest) -> HttpResponseBase:
    body = parse_body(request.body, CompletionRequest, content_type=request.content_type)
    return _http_response(await completions.create(body, _context(request, body.model)))


@endpoint("POST")
async def embeddings_create(request: HttpRequest) -> HttpResponseBase:
    body = parse_body(request.body, EmbeddingRequest, content_type=request.content_type)
    return _http_response(await embeddings.create(body, _context(request, body.model)))
