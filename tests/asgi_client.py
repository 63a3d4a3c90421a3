"""Requests to the ASGI application itself, as a server would make them, in this process."""

from __future__ import annotations

import asyncio


async def asgi_get(path: str, query_string: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """GET `path` from the ASGI application in this process: (status, headers, body)."""
    from plugsky_site.asgi import application

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query_string,
        "root_path": "", "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
    }  # fmt: skip
    messages = []
    requested = False

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b""}
        await asyncio.Event().wait()

    async def send(message):  # type: ignore[no-untyped-def]
        messages.append(message)

    await asyncio.wait_for(application(scope, receive, send), timeout=30)
    start = messages[0]
    body = b"".join(message.get("body", b"") for message in messages[1:])
    return start["status"], dict(start["headers"]), body
