"""Django's ASGI handler, trimmed for /v1: one async middleware and no hop to a thread.

Profiled on a chat call (issue 13), the site's handler spent more of the web process's CPU than
the call itself. Each of the seven sync middlewares (sessions, CSRF, auth, messages, …) runs
through `sync_to_async` in a thread of the request's own, which Django creates per request, and
the `request_started` signal takes another hop. /v1 needs none of that: its views authenticate
by key, never use sessions or CSRF, and reach the database only through `plugsky_site.db.db_call`,
which hands each connection back and clears the query log itself (what the signals' receivers
do for a request's own thread). So here the chain is `apps.gateway.middleware.v1_error_envelope`
alone, the Host is still checked and a body's length given as CommonMiddleware would, and only
`response.close()` may leave the event loop, for a pooled thread, when the loop's thread holds a
database connection (only ever a test's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import DisallowedHost, RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.db import connections
from django.http import HttpRequest, HttpResponseBase

from apps.gateway.middleware import envelope_for_status, is_v1_path, v1_error_envelope

logger = logging.getLogger("django.security.DisallowedHost")


def _holds_a_database_connection() -> bool:
    return any(c.connection is not None for c in connections.all(initialized_only=True))


def _site_checks(get_response: Any) -> Any:
    """What /v1 keeps of the site's middleware: a disallowed Host is refused (400), and a body
    gets its Content-Length (CommonMiddleware's two jobs here)."""

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        try:
            request.get_host()
        except DisallowedHost as refused:
            logger.warning("%s", refused)
            return envelope_for_status(400)
        response: HttpResponseBase = await get_response(request)
        if not response.streaming and not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))  # type: ignore[attr-defined]
        return response

    return middleware


# The organization admin API (apps.admin_api) lives under /v1 too, but is DRF's sync views on
# the site's stack: it keeps the site's handler, whose per-request thread those views need.
_SITE_PATHS_UNDER_V1 = ("/v1/organization/",)


def serves(path: str) -> bool:
    """Whether a request for `path` goes to this handler (the rest to the site's)."""
    return is_v1_path(path) and not path.startswith(_SITE_PATHS_UNDER_V1)


class V1ASGIHandler(ASGIHandler):
    """Serves the gateway's /v1 requests only (plugsky_site.asgi routes them here, by `serves`).

    Its views are async and must not call a thread-sensitive `sync_to_async`: without Django's
    per-request thread such a call would queue behind every other request's, on one thread.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        view = convert_exception_to_response(self._get_response_async)  # type: ignore[attr-defined]
        chain = convert_exception_to_response(_site_checks(view))
        self._middleware_chain = v1_error_envelope(chain)

    def create_request(self, scope: Mapping[str, Any], body_file: Any) -> Any:
        request, error_response = super().create_request(scope, body_file)
        if error_response is not None:  # an undecodable request: Django's answer, enveloped
            error_response = envelope_for_status(error_response.status_code)
        return request, error_response

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # No ThreadSensitiveContext: nothing on this path runs in a request's own thread (db_call
        # gives each piece of database work a pooled thread and connection, and hands both back).
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return
            response = await self._respond_unless_gone(request, receive, send)
            if response is None:
                pass
            elif _holds_a_database_connection():
                # `close` sends request_finished, whose receivers close the calling thread's
                # database connections: a connection on the loop's thread is a test's, with its
                # transaction. A pooled thread holds none (db_call handed it back).
                await sync_to_async(response.close, thread_sensitive=False)()
            else:
                response.close()  # under the ASGI server: no thread hop per request
        finally:
            body_file.close()

    async def _respond_unless_gone(
        self, request: HttpRequest, receive: Any, send: Any
    ) -> HttpResponseBase | None:
        """The response once sent, or None when the client left first (the work is cancelled)."""

        async def respond() -> HttpResponseBase:
            response: HttpResponseBase = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left while it was sent
                await self.send_response(response, send)
            return response

        responding = asyncio.create_task(respond())
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        await asyncio.wait((responding, listening), return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if not responding.done():
            responding.cancel()
        try:
            return await responding
        except asyncio.CancelledError:
            return None
        finally:
            await asyncio.gather(listening, return_exceptions=True)
