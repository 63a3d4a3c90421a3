"""Run an ASGI or WSGI app on 127.0.0.1 at a free port, in a thread, for one block of a test.

    from tests.fakes.server import serve, serve_wsgi

    async def app(scope, receive, send):  # any ASGI 3 app (uvicorn serves it)
        ...

    with serve(app) as base_url:  # "http://127.0.0.1:54321"
        ...  # call base_url + "/v1/chat/completions" from the code under test

    with serve_wsgi(wsgi_app) as base_url:  # a WSGI app, one thread per request
        ...

Both bind the socket before the thread starts, so the URL is ready at once (no port race), and
stop the server when the block ends. An ASGI app sees a client that goes away as an
``http.disconnect`` message (or a failing ``send``), which is how a fake observes that the code
under test closed a stream early.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import uvicorn

_START_TIMEOUT_S = 10.0


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn for the block; yields its base URL (no trailing slash)."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket names its protocol; without it every kept-alive reply waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        # A stream the test left open must not hold the block's exit for long.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started, what="uvicorn")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=_START_TIMEOUT_S)
        sock.close()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request on stderr would bury the test's own output


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve the WSGI `app` with wsgiref, a thread per request; yields its base URL."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=_START_TIMEOUT_S)


def _wait_until(ready: Any, *, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {_START_TIMEOUT_S} s")
        time.sleep(0.01)
