"""The adapter every /v1 view goes through: method check, admission, authentication, limits,
errors, headers.

Views stay thin: a handler receives an authenticated, admitted request and returns a response or
raises APIError; this module turns everything else into OpenAI's envelope (an unavailable database
or Redis into a 503 to retry, never a 500) and adds the `x-ratelimit-*` headers of every limit the
request counted against, to errors too. An endpoint of another vendor's API (Anthropic's Messages)
names the envelope its errors are rendered in (`errors_as`).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError as DatabaseOperationalError
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from apps.gateway.admission import Admission
from apps.gateway.ratelimit import rate_limit_take, request_limits
from apps.keys.authentication import InvalidAPIKey, authenticate_async
from apps.protocol import errors

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[HttpResponseBase]]
# Renders an APIError for the client: OpenAI's envelope unless the endpoint names another.
ErrorRenderer = Callable[[errors.APIError, HttpRequest], HttpResponseBase]


def openai_error(error: errors.APIError, request: HttpRequest) -> HttpResponseBase:
    return error.response()


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def endpoint(
    *methods: str, errors_as: ErrorRenderer = openai_error
) -> Callable[[Handler], Callable[..., Any]]:
    """Wrap an async handler as an authenticated /v1 view that accepts `methods`."""

    def decorate(handler: Handler) -> Callable[..., Any]:
        @csrf_exempt
        @functools.wraps(handler)
        async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            started = time.monotonic()
            request_id = new_request_id()
            request.request_id = request_id  # type: ignore[attr-defined]
            admission = Admission()
            try:
                with request_limits() as limits:
                    response = await _respond(
                        handler, methods, admission, errors_as, request, *args, **kwargs
                    )
            except BaseException:  # cancelled: the client left before there was a response
                await admission.release()
                raise
            for name, value in limits.headers().items():
                response.setdefault(name, value)
            response["x-request-id"] = request_id
            response["openai-processing-ms"] = str(int((time.monotonic() - started) * 1000))
            await admission.release_when_done(response)
            return response

        return view

    return decorate


async def _respond(
    handler: Handler,
    methods: tuple[str, ...],
    admission: Admission,
    errors_as: ErrorRenderer,
    request: HttpRequest,
    *args: Any,
    **kwargs: Any,
) -> HttpResponseBase:
    try:
        return await _dispatch(handler, methods, admission, request, *args, **kwargs)
    except errors.APIError as error:
        return errors_as(error, request)
    except RequestDataTooBig:
        return errors_as(errors.request_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE), request)
    except (DatabaseOperationalError, redis.ConnectionError, redis.TimeoutError):
        # A pool timeout or an unreachable database or Redis: the caller may retry.
        logger.warning("backend unavailable in %s %s", request.method, request.path, exc_info=True)
        unavailable = errors.service_unavailable(
            "The server is temporarily unable to handle your request. Please retry shortly.",
            retry_after_s=2,
        )
        return errors_as(unavailable, request)
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return errors_as(errors.internal_error(), request)


async def _dispatch(
    handler: Handler,
    methods: tuple[str, ...],
    admission: Admission,
    request: HttpRequest,
    *args: Any,
    **kwargs: Any,
) -> HttpResponseBase:
    method = request.method or "GET"
    if method not in methods:
        raise errors.method_not_allowed(method, request.path, list(methods))
    admission.take_process_slot()
    try:
        identity = await authenticate_async(
            request.headers.get("Authorization"), api_key=request.headers.get("x-api-key")
        )
    except InvalidAPIKey as failure:
        raise errors.invalid_api_key(str(failure)) from None
    request.identity = identity  # type: ignore[attr-defined]
    await rate_limit_take(key_id=identity.key_id)
    await admission.take_organization_slot(
        organization_id=identity.organization_id,
        slot_id=request.request_id,  # type: ignore[attr-defined]
    )
    return await handler(request, *args, **kwargs)


@csrf_exempt
async def unknown_v1_path(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """Any /v1 path that matches no endpoint: a 404 in the envelope, never an HTML page."""
    response = errors.unknown_url(request.method or "GET", request.path).response()
    response["x-request-id"] = new_request_id()
    return response
