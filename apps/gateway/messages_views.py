"""Anthropic's Messages API under /v1: `POST /v1/messages` and `/v1/messages/count_tokens`.

The views go through the same endpoint adapter as OpenAI's (admission, `x-api-key` or Bearer
authentication, limits), with errors in Anthropic's envelope. `anthropic-version` and
`anthropic-beta` are accepted and change nothing: one shape is served, the current one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

from apps.billing.pricing import COST_HEADER, cost_header_value
from apps.gateway.endpoint import endpoint
from apps.gateway.serving import messages
from apps.gateway.serving.common import CallContext, Priced, model_access_check
from apps.gateway.serving.message_events import EventStream
from apps.protocol import anthropic
from apps.protocol.errors import APIError
from apps.protocol.openai import parse_body


def anthropic_error(error: APIError, request: HttpRequest) -> HttpResponseBase:
    request_id = getattr(request, "request_id", None)
    response = anthropic.error_response(error, request_id=request_id)
    if request_id is not None:
        response["request-id"] = request_id  # where Anthropic's SDKs read `_request_id`
    return response


@endpoint("POST", errors_as=anthropic_error)
async def messages_create(request: HttpRequest) -> HttpResponseBase:
    body = parse_body(request.body, anthropic.MessagesRequest, content_type=request.content_type)
    result = await messages.create(body, _context(request, body.model))
    if isinstance(result, Priced):
        response: HttpResponseBase = JsonResponse(result.body)
        response[COST_HEADER] = cost_header_value(result.cost_micros)
    else:
        response = _event_stream_response(result)
    response["request-id"] = request.request_id  # type: ignore[attr-defined]
    return response


@endpoint("POST", errors_as=anthropic_error)
async def messages_count_tokens(request: HttpRequest) -> HttpResponseBase:
    body = parse_body(request.body, anthropic.CountTokensRequest, content_type=request.content_type)
    return JsonResponse(await messages.count_tokens(body, _context(request, body.model)))


def _context(request: HttpRequest, model_id: str) -> CallContext:
    identity = request.identity  # type: ignore[attr-defined]
    model_access_check(model_id, identity=identity)
    return CallContext(
        request_id=request.request_id,  # type: ignore[attr-defined]
        organization_id=identity.organization_id,
        api_key_id=identity.key_id,
    )


def _event_stream_response(events: EventStream) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_framed(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must flush every event
    return response


async def _framed(events: EventStream) -> AsyncIterator[bytes]:
    """Anthropic's SSE framing: `event: <type>` and `data: <json>`; no `[DONE]`."""
    try:
        async for name, data in events:
            yield _event(name, data)
    finally:
        await events.aclose()  # closed early (a client gone): settle the call now


def _event(name: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()
