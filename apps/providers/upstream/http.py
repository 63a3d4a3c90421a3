"""HTTP to upstream model servers, shared by every upstream provider.

- aiohttp, one session per event loop (its connector pools connections per server), kept for
  the life of the process; a session cannot outlive the loop it was made on, so a Celery task,
  which runs on a loop of its own, has a session for each call. Not httpx: measured against
  the benchmark's mock, an httpx POST cost 0.88 ms of CPU and a 20-chunk stream 1.44 ms;
  aiohttp 0.26 and 0.29 ms.
- Explicit timeouts: connecting is short (a server that is down fails fast and the next route is
  tried), reading allows a slow first token and slow gaps between chunks.
- Failures become ``ProviderError``: refused connections, timeouts, 5xx and 429 are
  ``retryable`` (the backend's fault, with a 429's ``Retry-After``); any other 4xx is the
  request's fault and is passed back with the upstream's message and ``param``.
- A response that is closed early (the client went away) closes its connection, which is how the
  upstream learns to stop generating; one read to its end goes back to the pool.
- Providers see an ``UpstreamResponse``, never the client library's objects.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import aiohttp

from apps.providers.errors import ProviderError
from plugsky_site.db import caller_thread_waits

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 300.0  # a first token behind a long prompt, or a long gap in a stream
KEEPALIVE_S = 30.0

# The upstream's error body -> (message, param, code); each vendor has its own shape.
ErrorReader = Callable[[Any], tuple[str, str | None, str | None]]

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
_sessions_lock = threading.Lock()


@asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    """The pooled session of the running event loop; for a loop that serves one synchronous
    caller (a Celery task, the test client) and then closes, a session of the call's own, closed
    with it: nothing could reuse its connections."""
    if caller_thread_waits():
        async with _new_session() as own:
            yield own
        return
    loop = asyncio.get_running_loop()
    with _sessions_lock:
        pooled = _sessions.get(loop)
        if pooled is None or pooled.closed:
            gone = _sessions_of_closed_loops()
            pooled = _sessions[loop] = _new_session()
        else:
            gone = []
    await _closed(gone)
    yield pooled


def _sessions_of_closed_loops() -> list[aiohttp.ClientSession]:
    """Forget the sessions whose loops are closed, for the caller to close. Such a session can no
    longer close its sockets (they close when collected), but one marked closed is collected
    without aiohttp logging an error for it."""
    gone = [loop for loop in _sessions if loop.is_closed()]
    return [_sessions.pop(loop) for loop in gone]


@atexit.register
def _close_at_exit() -> None:
    with _sessions_lock:
        gone = _sessions_of_closed_loops()
    if gone:
        asyncio.run(_closed(gone))


async def _closed(sessions: list[aiohttp.ClientSession]) -> None:
    for session in sessions:
        await session.close()


def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        # Streams hold a connection each for their whole length: never queue them.
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
        # `connect` covers the name's lookup and the TLS handshake too, as httpx's did; a
        # socket's connect alone would leave a hanging resolver unbounded.
        timeout=aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
        ),
        trust_env=False,
        # Bodies are parsed as they arrive: compressing them would only cost both ends CPU. (A
        # server that compresses all the same is still decoded.)
        skip_auto_headers=("Accept-Encoding",),
    )


class UpstreamResponse:
    """A 2xx answer whose body has not been read yet."""

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers: Mapping[str, str] = raw.headers  # case-insensitive

    async def read(self) -> bytes:
        return await self._raw.read()

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        async for piece in self._raw.content.iter_any():
            yield piece


@asynccontextmanager
async def opened(
    base_url: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    form: aiohttp.FormData | None = None,
    headers: dict[str, str],
    read_error: ErrorReader,
    upstream: str,
) -> AsyncIterator[UpstreamResponse]:
    """POST `body` as JSON (or `form` as multipart) and yield the response once its status is
    2xx, its body unread.

    Raises ProviderError for anything else; closes the response on exit, early or not. `path`
    is relative to `base_url` (no leading slash), `upstream` names the server in messages.
    """
    url = base_url.rstrip("/") + "/" + path.lstrip("/")
    if form is None:
        data: Any = json.dumps(body).encode()
        headers = {**headers, "Content-Type": "application/json"}
    else:
        data = form
    async with _session() as client:
        try:
            raw = await _sent(client, url, data=data, headers=headers, is_resendable=form is None)
        except TimeoutError as failure:
            raise unreachable(upstream, "timed out", status=504) from failure
        except aiohttp.ClientError as failure:
            raise unreachable(upstream, "is unreachable", status=502) from failure
        try:
            if raw.status >= 300:
                content = await raw.read()
                raise status_error(
                    raw.status, raw.headers, content, read_error=read_error, upstream=upstream
                )
            yield UpstreamResponse(raw)
        except TimeoutError as failure:
            raise unreachable(upstream, "timed out", status=504) from failure
        except aiohttp.ClientError as failure:
            raise unreachable(upstream, "broke the connection", status=502) from failure
        finally:
            if raw.content.at_eof():
                raw.release()  # read to its end: the connection goes back to the pool
            else:
                raw.close()  # left early: the upstream sees its connection close and stops


async def _sent(
    client: aiohttp.ClientSession,
    url: str,
    *,
    data: Any,
    headers: dict[str, str],
    is_resendable: bool,
) -> aiohttp.ClientResponse:
    """The response's head; a request that met a pooled connection the server had just closed
    goes once more, on a new connection.

    A server may close a kept-alive connection after a response without saying so (llama.cpp's
    does, at times), and a request sent on it at that moment gets no answer at all. Reading
    every stream to its end made connections reusable, and so made this race possible. (A
    multipart form is not sent twice: its parts are read once.) A connection that could not be
    made at all is not tried again: it would fail the same way at once.
    """
    try:
        return await client.post(url, data=data, headers=headers)
    except aiohttp.ClientConnectorError:
        raise
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        if not is_resendable:
            raise
        return await client.post(url, data=data, headers=headers)


async def status_of(url: str, *, timeout_s: float) -> int | None:
    """The status of a GET of `url` (a health check), or None when no answer came in time."""
    try:
        async with _session() as client:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with client.get(url, timeout=timeout) as answer:
                return answer.status
    except (TimeoutError, aiohttp.ClientError):
        return None


async def read_json(response: UpstreamResponse, *, upstream: str) -> Any:
    try:
        return json.loads(await response.read())
    except ValueError:
        raise malformed(upstream, "a body that is not JSON") from None


async def server_sent_events(response: UpstreamResponse) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each server-sent event; `event` is "" when the server names none."""
    event, data = "", list[str]()
    async for line in _lines(response):
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", list[str]()
        elif line.startswith(":"):
            continue  # a comment: keep-alive
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


async def _lines(response: UpstreamResponse) -> AsyncIterator[str]:
    """The body's lines, split on bytes: decoding and re-splitting text in Python cost a third
    of a streamed call's parsing (profiled, with httpx's `aiter_lines`). A UTF-8 sequence never
    holds a newline byte, so each line decodes on its own. Lines end in \\n or \\r\\n, as every
    vendor sends them."""
    rest = b""
    async for piece in response.pieces():
        *lines, rest = (rest + piece).split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode(errors="replace")
    if rest:
        yield rest.removesuffix(b"\r").decode(errors="replace")


def loads(data: str, *, upstream: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise malformed(upstream, "a chunk that is not JSON") from None


def status_error(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    read_error: ErrorReader,
    upstream: str,
) -> ProviderError:
    """The ProviderError for an upstream's non-2xx answer."""
    try:
        message, param, code = read_error(json.loads(content))
    except (ValueError, KeyError, TypeError, AttributeError):
        text = content.decode(errors="replace")[:500]
        message, param, code = text or _phrase(status), None, None
    if status == 429:
        return ProviderError(
            f"{upstream} is rate limiting Plugsky: {message}",
            status=503,
            code="upstream_rate_limited",
            retryable=True,
            retry_after_s=retry_after(headers),
        )
    if status >= 500 or status in (408, 409):
        return ProviderError(
            f"{upstream} failed ({status}): {message}",
            status=502,
            code="upstream_error",
            retryable=True,
        )
    if status in (401, 403, 404):
        # The operator's credentials or model name, not the customer's request: a failure of
        # this route, which the next one may not have.
        return ProviderError(
            f"{upstream} refused the call ({status}): {message}",
            status=502,
            code="upstream_misconfigured",
            retryable=True,
        )
    return ProviderError(message, status=400, code=code or "invalid_request", param=param)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"status {status}"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """A Retry-After header in seconds (delta or HTTP date), or None.

    OpenAI's `retry-after-ms` comes first where sent: it is the finer of the two.
    """
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError):
        return None


def unreachable(upstream: str, what: str, *, status: int) -> ProviderError:
    code = "upstream_timeout" if status == 504 else "upstream_unavailable"
    return ProviderError(f"{upstream} {what}.", status=status, code=code, retryable=True)


def malformed(upstream: str, what: str) -> ProviderError:
    return ProviderError(
        f"{upstream} sent {what}.", status=502, code="upstream_malformed", retryable=True
    )


async def refused_stream(error: ProviderError) -> AsyncIterator[Any]:
    """A stream that fails on its first chunk: what chat() or complete() return for a call the
    backend cannot serve, so the error comes where every stream's errors come."""
    raise error
    yield  # unreachable: makes this an async generator
