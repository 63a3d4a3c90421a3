"""Thin async views for /v1/responses: each adapts one serving function to HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

from apps.billing.pricing import COST_HEADER, cost_header_value
from apps.gateway.endpoint import endpoint
from apps.gateway.serving import responses, stored_responses
from apps.gateway.serving.common import CallContext, Priced, model_access_check
from apps.gateway.serving.response_output import EventStream
from apps.protocol.openai import parse_body
from apps.protocol.responses import ResponsesRequest


@endpoint("POST")
async def responses_create(request: HttpRequest) -> HttpResponseBase:
    body = parse_body(request.body, ResponsesRequest, content_type=request.content_type)
    identity = request.identity  # type: ignore[attr-defined]
    model_access_check(body.model, identity=identity)
    ctx = CallContext(
        request_id=request.request_id,  # type: ignore[attr-defined]
        organization_id=identity.organization_id,
        api_key_id=identity.key_id,
    )
    result = await responses.create(body, ctx)
    if isinstance(result, Priced):
        response = JsonResponse(result.body)
        response[COST_HEADER] = cost_header_value(result.cost_micros)
        return response
    return _event_stream(result)


@endpoint("GET", "DELETE")
async def response_detail(request: HttpRequest, response_id: str) -> HttpResponseBase:
    act = stored_responses.delete if request.method == "DELETE" else stored_responses.retrieve
    return JsonResponse(
        await act(organization_id=_organization_id(request), response_id=response_id)
    )


@endpoint("GET")
async def response_input_items(request: HttpRequest, response_id: str) -> HttpResponseBase:
    page = await stored_responses.input_items(
        organization_id=_organization_id(request), response_id=response_id, query=request.GET
    )
    return JsonResponse(page)


def _organization_id(request: HttpRequest) -> int:
    return int(request.identity.organization_id)  # type: ignore[attr-defined]


def _event_stream(events: EventStream) -> StreamingHttpResponse:
    """Named server-sent events (`event: <type>`, `data: <json>`), no `[DONE]`, as OpenAI's."""
    response = StreamingHttpResponse(_frames(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must flush every event
    return response


async def _frames(events: EventStream) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield _frame(event)
    finally:
        # Closed early (a client gone): close the serving stream now, so the call settles.
        await events.aclose()


def _frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
