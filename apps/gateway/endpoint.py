"""The adapter every /v1 view goes through: method check, authentication, errors, headers.

Views stay thin: a handler receives an authenticated request and returns a response or raises
APIError; this module turns everything else into OpenAI's envelope.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from apps.gateway import errors
from apps.gateway.ratelimit import rate_limit_take
from apps.keys.authentication import InvalidAPIKey, KeyIdentity, authenticate_async

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[HttpResponseBase]]


class APIRequest(HttpRequest):
    """A /v1 request after authentication (for type checkers; set by `endpoint`)."""

    request_id: str
    identity: KeyIdentity


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def endpoint(*methods: str) -> Callable[[Handler], Callable[..., Any]]:
    """Wrap an async handler as an authenticated /v1 view that accepts `methods`."""

    def decorate(handler: Handler) -> Callable[..., Any]:
        @csrf_exempt
        @functools.wraps(handler)
        async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            started = time.monotonic()
            request_id = new_request_id()
            request.request_id = request_id  # type: ignore[attr-defined]
            try:
                response = await _dispatch(handler, methods, request, *args, **kwargs)
            except errors.APIError as error:
                response = error.response()
            except RequestDataTooBig:
                response = errors.request_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE).response()
            except Exception:
                logger.exception("unhandled error in %s %s", request.method, request.path)
                response = errors.internal_error().response()
            response["x-request-id"] = request_id
            response["openai-processing-ms"] = str(int((time.monotonic() - started) * 1000))
            return response

        return view

    return decorate


async def _dispatch(
    handler: Handler, methods: tuple[str, ...], request: HttpRequest, *args: Any, **kwargs: Any
) -> HttpResponseBase:
    method = request.method or "GET"
    if method not in methods:
        raise errors.method_not_allowed(method, request.path, list(methods))
    try:
        identity = await authenticate_async(request.headers.get("Authorization"))
    except InvalidAPIKey as failure:
        raise errors.invalid_api_key(str(failure)) from None
    request.identity = identity  # type: ignore[attr-defined]
    allowance = await rate_limit_take(key_id=identity.key_id)
    response = await handler(request, *args, **kwargs)
    for name, value in allowance.headers().items():
        response[name] = value
    return response


@csrf_exempt
async def unknown_v1_path(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """Any /v1 path that matches no endpoint: a 404 in the envelope, never an HTML page."""
    response = errors.unknown_url(request.method or "GET", request.path).response()
    response["x-request-id"] = new_request_id()
    return response
