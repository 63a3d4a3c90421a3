"""HTTP to upstream model servers, shared by every upstream provider.

- One pooled ``httpx.AsyncClient`` per base URL and event loop, kept for the life of the process
  (a client cannot outlive the loop it was made on; Celery tasks run each on a fresh loop).
- Explicit timeouts: connecting is short (a server that is down fails fast and the next route is
  tried), reading allows a slow first token and slow gaps between chunks.
- Failures become ``ProviderError``: refused connections, timeouts, 5xx and 429 are
  ``retryable`` (the backend's fault, with a 429's ``Retry-After``); any other 4xx is the
  request's fault and is passed back with the upstream's message and ``param``.
- A response that is closed early (the client went away) closes its connection, which is how the
  upstream learns to stop generating.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from apps.providers.errors import ProviderError

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 300.0  # a first token behind a long prompt, or a long gap in a stream

# The upstream's error body -> (message, param, code); each vendor has its own shape.
ErrorReader = Callable[[Any], tuple[str, str | None, str | None]]

_clients: dict[tuple[str, asyncio.AbstractEventLoop], httpx.AsyncClient] = {}
_clients_lock = threading.Lock()


def client_for(base_url: str) -> httpx.AsyncClient:
    """The pooled client of `base_url` on the running event loop."""
    loop = asyncio.get_running_loop()
    key = (base_url, loop)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            for gone in [known for known in _clients if known[1].is_closed()]:
                del _clients[gone]  # its connections died with their loop
            client = _clients[key] = httpx.AsyncClient(
                base_url=base_url.rstrip("/") + "/",
                timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                # Streams hold a connection each for their whole length: never queue them.
                limits=httpx.Limits(
                    max_connections=None, max_keepalive_connections=64, keepalive_expiry=30
                ),
                trust_env=False,
            )
        return client


@asynccontextmanager
async def opened(
    base_url: str,
    path: str,
    *,
    body: dict[str, Any],
    headers: dict[str, str],
    read_error: ErrorReader,
    upstream: str,
) -> AsyncIterator[httpx.Response]:
    """POST `body` as JSON and yield the response once its status is 2xx (its body unread).

    Raises ProviderError for anything else; closes the response on exit, early or not. `path`
    is relative to `base_url` (no leading slash), `upstream` names the server in messages.
    """
    client = client_for(base_url)
    request = client.build_request("POST", path.lstrip("/"), json=body, headers=headers)
    try:
        response = await _sent(client, request)
    except httpx.TimeoutException as failure:
        raise unreachable(upstream, "timed out", status=504) from failure
    except httpx.TransportError as failure:
        raise unreachable(upstream, "is unreachable", status=502) from failure
    try:
        if response.status_code >= 300:
            await response.aread()
            raise status_error(response, read_error=read_error, upstream=upstream)
        yield response
    except httpx.TimeoutException as failure:
        raise unreachable(upstream, "timed out", status=504) from failure
    except httpx.TransportError as failure:
        raise unreachable(upstream, "broke the connection", status=502) from failure
    finally:
        await response.aclose()


async def _sent(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """The response's head; a request that met a pooled connection the server had just closed
    goes once more, on a new connection.

    A server may close a kept-alive connection after a response without saying so (llama.cpp's
    does, at times), and a request sent on it at that moment gets no answer at all. Reading
    every stream to its end made connections reusable, and so made this race possible.
    """
    try:
        return await client.send(request, stream=True)
    except httpx.RemoteProtocolError:
        return await client.send(request, stream=True)


async def read_json(response: httpx.Response, *, upstream: str) -> Any:
    await response.aread()
    try:
        return response.json()
    except ValueError:
        raise malformed(upstream, "a body that is not JSON") from None


async def server_sent_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
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


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """The body's lines, split on bytes: httpx's `aiter_lines` decodes and re-splits text in
    Python and cost a third of a streamed call's parsing (profiled). A UTF-8 sequence never
    holds a newline byte, so each line decodes on its own. Lines end in \\n or \\r\\n, as every
    vendor sends them."""
    rest = b""
    async for piece in response.aiter_bytes():
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
    response: httpx.Response, *, read_error: ErrorReader, upstream: str
) -> ProviderError:
    """The ProviderError for an upstream's non-2xx answer."""
    status = response.status_code
    try:
        message, param, code = read_error(response.json())
    except (ValueError, KeyError, TypeError, AttributeError):
        message, param, code = response.text[:500] or response.reason_phrase, None, None
    if status == 429:
        return ProviderError(
            f"{upstream} is rate limiting Plugsky: {message}",
            status=503,
            code="upstream_rate_limited",
            retryable=True,
            retry_after_s=retry_after(response),
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


def retry_after(response: httpx.Response) -> float | None:
    """A Retry-After header in seconds (delta or HTTP date), or None.

    OpenAI's `retry-after-ms` comes first where sent: it is the finer of the two.
    """
    try:
        return max(0.0, float(response.headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = response.headers.get("retry-after")
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
