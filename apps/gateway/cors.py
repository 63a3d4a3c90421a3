"""CORS for /v1, so that a page on any origin can call the API with `fetch` or an SDK.

An API key is a bearer token the page sends itself; no cookie or other ambient credential means
anything under /v1, so any origin may call (`Access-Control-Allow-Origin: *`) and credentials are
never allowed: a page can only spend a key it already holds. The dashboard is not under /v1 and
keeps its same-origin session and CSRF protection.

A preflight (`OPTIONS`) is answered here, before any view: it needs no key and counts against no
limit. The browser asks for the headers it will send (`authorization`, `x-api-key`,
`anthropic-version`, the SDKs' `x-stainless-*`, …); they are echoed, so a new SDK header needs no
change here.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from apps.billing.pricing import COST_HEADER

ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
# Chromium caps a preflight's cache at two hours, Firefox at a day.
MAX_AGE_S = 7200
# When the browser names no headers: what the OpenAI and Anthropic SDKs send.
_DEFAULT_ALLOWED_HEADERS = "authorization, content-type, x-api-key, anthropic-version"
_RATE_LIMIT_HEADERS = tuple(
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
)
EXPOSED_HEADERS = ", ".join(
    (
        "x-request-id",
        "request-id",
        "openai-processing-ms",
        COST_HEADER,
        "retry-after",
        "x-should-retry",
        *_RATE_LIMIT_HEADERS,
    )
)
# An HTTP token (RFC 9110): a requested name that is anything else is not echoed, so nothing
# a page sends can break the header line.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def preflight_response(request: HttpRequest) -> HttpResponse:
    """204 for an `OPTIONS` on a /v1 path: what a browser needs to send the real request."""
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response["Access-Control-Allow-Headers"] = _allowed_headers(request)
    response["Access-Control-Max-Age"] = str(MAX_AGE_S)
    response["Allow"] = ALLOWED_METHODS
    # The answer depends on what was asked: a shared cache must not give it to another request.
    response["Vary"] = "Access-Control-Request-Headers, Access-Control-Request-Method"
    return response


def with_cors_headers(response: HttpResponseBase) -> HttpResponseBase:
    """A /v1 response (errors and streams too) that a page on another origin may read."""
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def _allowed_headers(request: HttpRequest) -> str:
    requested = request.headers.get("Access-Control-Request-Headers", "")
    names = [name.strip().lower() for name in requested.split(",")]
    valid = [name for name in names if _HEADER_NAME.match(name)]
    return ", ".join(valid) if valid else _DEFAULT_ALLOWED_HEADERS
