"""Test-only /v1 views behind the real endpoint adapter, beside the real URLs.

`slow` holds a pooled database connection for as long as it is asked to; `stream` is a slow SSE
body; `tokens` counts estimated tokens as metering does, then answers or fails as asked; `fail`
meets an unavailable database or Redis after authentication.
"""

import asyncio
import time

import redis
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.urls import include, path

from apps.gateway.endpoint import endpoint
from apps.gateway.ratelimit import rate_limit_tokens_take
from apps.protocol import errors
from plugsky_site.db import db_call


def _hold_connection(seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    time.sleep(seconds)


@endpoint("GET")
async def slow(request: HttpRequest) -> HttpResponseBase:
    await db_call(_hold_connection, float(request.GET.get("s", "1")))
    return JsonResponse({"ok": True})


@endpoint("GET")
async def stream(request: HttpRequest) -> HttpResponseBase:
    count = int(request.GET.get("n", "3"))
    delay_s = float(request.GET.get("delay", "0"))

    async def events():  # type: ignore[no-untyped-def]
        for index in range(count):
            if index:
                await asyncio.sleep(delay_s)
            yield f"data: {index}\n\n".encode()

    return StreamingHttpResponse(events(), content_type="text/event-stream")


@endpoint("POST")
async def tokens(request: HttpRequest) -> HttpResponseBase:
    identity = request.identity  # type: ignore[attr-defined]
    await rate_limit_tokens_take(key_id=identity.key_id, tokens=int(request.GET["n"]))
    if request.GET.get("fail") == "model":
        raise errors.model_not_found("nope")
    return JsonResponse({"ok": True})


@endpoint("GET")
async def fail(request: HttpRequest) -> HttpResponseBase:
    if request.GET["what"] == "database":
        raise OperationalError("couldn't get a connection after 5.00 sec")
    raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


urlpatterns = [
    path("v1/_test/slow", slow),
    path("v1/_test/stream", stream),
    path("v1/_test/tokens", tokens),
    path("v1/_test/fail", fail),
    path("", include("plugsky_site.urls")),
]
