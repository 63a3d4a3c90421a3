"""Every answer under /v1 is JSON in OpenAI's envelope, also the ones Django makes by itself.

/v1 views answer in the envelope already (endpoint.py). Before a view runs, Django can still
answer with an HTML page of its own: a 400 for a disallowed Host (any SuspiciousOperation), a 404
or 500 page, a 403 from a middleware, or in the ASGI handler a 400 for an undecodable request.
`v1_error_envelope` (first in MIDDLEWARE) and plugsky_site.asgi turn those into the envelope.

Being first, it also answers CORS for /v1 (apps.gateway.cors): preflights before anything else
runs (no key, no limits), and the CORS headers on every /v1 response, Django's own included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from apps.gateway import cors
from apps.gateway.endpoint import new_request_id
from apps.protocol import errors

_MESSAGES = {
    400: "The request could not be understood by the server (bad request).",
    403: "The request was refused.",
    404: "Invalid URL.",
    405: "The method is not allowed.",
    413: "The request is too large.",
}


def is_v1_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def envelope_for_status(status: int) -> HttpResponseBase:
    """The envelope for an error Django answered before (or without) a /v1 view."""
    if status >= 500:
        error = errors.internal_error()
        error.status = status
    else:
        code = "unknown_url" if status == 404 else None
        error = errors.APIError(
            _MESSAGES.get(status, "The request failed."), status=status, code=code
        )
    response = error.response()
    response["x-request-id"] = new_request_id()
    return cors.with_cors_headers(response)


def _is_django_page(response: HttpResponseBase) -> bool:
    if response.status_code < 400 or response.streaming:
        return False
    return not response.get("Content-Type", "").startswith("application/json")


def _enveloped(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if not is_v1_path(request.path_info):
        return response
    if _is_django_page(response):
        return envelope_for_status(response.status_code)
    return cors.with_cors_headers(response)


def _is_v1_preflight(request: HttpRequest) -> bool:
    return request.method == "OPTIONS" and is_v1_path(request.path_info)


@sync_and_async_middleware
def v1_error_envelope(
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
) -> Callable[..., object]:
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            if _is_v1_preflight(request):
                return cors.preflight_response(request)
            return _enveloped(request, await get_response(request))

    else:

        def middleware(request: HttpRequest) -> HttpResponseBase:  # type: ignore[misc]
            if _is_v1_preflight(request):
                return cors.preflight_response(request)
            return _enveloped(request, get_response(request))  # type: ignore[arg-type]

    return middleware
