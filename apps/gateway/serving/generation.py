"""Settling a generation's meter exactly once, from the Usage its provider keeps current.

Every generation runs as a stream inside, also for non-streaming requests: a client that goes
away closes the provider's stream, which cancels the work upstream, and the provider's Usage
says what was generated until then.

Every call is settled exactly once, however it ends: a serving module does everything after
`meter_open` inside `settled_on_failure`, and a stream settles itself in `stream_started`'s
chunks. A stream that fails after its first chunk ends with one error chunk (`{"error": …}`);
the view then ends it with `[DONE]` as every stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from apps.gateway.metering import Meter, meter_close
from apps.gateway.serving.common import ChunkStream, api_error_from, stream_close, usage_body
from apps.protocol import errors
from apps.providers.base import Usage
from apps.providers.errors import ProviderError

logger = logging.getLogger(__name__)

Chunk = dict[str, Any]
T = TypeVar("T")


async def close_meter_safely(
    meter: Meter,
    usage: Usage,
    *,
    status: int,
    error_code: str = "",
    client_disconnected: bool = False,
) -> int:
    """Settle once; meter_close goes on even while the surrounding task is being cancelled."""
    return await meter_close(
        meter,
        usage=usage,
        status=status,
        error_code=error_code,
        client_disconnected=client_disconnected,
    )


def _failure_outcome(failure: BaseException) -> tuple[int, str, bool]:
    """(status, error_code, client_disconnected) of a call that ended with `failure`."""
    if isinstance(failure, ProviderError):
        return failure.status, failure.code or "provider_error", False
    if isinstance(failure, errors.APIError):
        return failure.status, failure.code or failure.type, False
    if isinstance(failure, asyncio.CancelledError | GeneratorExit):
        return 499, "client_disconnected", True  # the client went away: bill what ran
    return 500, "internal_error", False


async def settle_failure(meter: Meter, usage: Usage, failure: BaseException) -> None:
    """Settle a call that did not finish (unless it already was): what ran is recorded, and
    billed per the billing rule."""
    if meter.is_closed:
        return
    status, error_code, disconnected = _failure_outcome(failure)
    if error_code == "internal_error":
        logger.error("%s call %s failed", meter.endpoint, meter.request_id, exc_info=failure)
    await close_meter_safely(
        meter, usage, status=status, error_code=error_code, client_disconnected=disconnected
    )


async def settled_on_failure(meter: Meter, usage: Usage, work: Awaitable[T]) -> T:
    """Await `work`: everything a serving module does after meter_open.

    Whatever fails there (an engine error, a bug, a client that leaves) settles the call before
    the failure goes on, so no hold is left to expire; a provider's error becomes its APIError.
    """
    try:
        return await work
    except BaseException as failure:
        await settle_failure(meter, usage, failure)
        if isinstance(failure, ProviderError):
            raise api_error_from(failure) from None
        raise


async def stream_started(
    stream: AsyncIterator[Chunk],
    meter: Meter,
    usage: Usage,
    *,
    convert: Callable[[Chunk], list[Chunk]],
    usage_envelope: Callable[[], Chunk] | None,
) -> ChunkStream:
    """The client chunks of a streamed call, returned once the first of them exists.

    A provider's error before any output (a prompt over the context window, a model that
    cannot load, a parameter the backend refuses) is then raised here, so the view still
    answers it with its own status in OpenAI's envelope, not a 200 stream that carries an error
    chunk.
    """
    chunks = _client_chunks(stream, meter, usage, convert=convert, usage_envelope=usage_envelope)
    first = await anext(chunks, None)  # None: a backend that streamed nothing, asked no usage
    return ChunkStream(_prepended(first, chunks), usage)


async def _client_chunks(
    stream: AsyncIterator[Chunk],
    meter: Meter,
    usage: Usage,
    *,
    convert: Callable[[Chunk], list[Chunk]],
    usage_envelope: Callable[[], Chunk] | None,
) -> AsyncGenerator[Chunk, None]:
    """The chunks of a streamed call, settling its meter exactly once.

    `convert` turns a provider chunk into client chunks; `usage_envelope` (when the client
    asked for usage) gives the empty chunk that carries the final usage.
    """
    has_sent = False
    try:
        async for chunk in stream:
            for out in convert(chunk):
                has_sent = True
                yield out
    except BaseException as failure:
        await settle_failure(meter, usage, failure)
        if not isinstance(failure, Exception):
            raise  # cancelled or closed: the client is gone, nobody to tell
        error = _api_error(failure)
        if not has_sent and isinstance(failure, ProviderError | errors.APIError):
            raise error from None  # see `stream_started`
        # After the first chunk the status line is sent: the error travels as one last chunk,
        # and the stream still ends as every stream does.
        yield error.body()
        return
    finally:
        await stream_close(stream)
    # The content is delivered: the stream ends normally even if settlement is still retrying
    # (meter_close then answers with the call's price, see apps.gateway.metering).
    cost = await close_meter_safely(meter, usage, status=200)
    if usage_envelope is not None:
        final = usage_envelope()
        final["usage"] = usage_body(usage, cost)
        yield final


def _api_error(failure: Exception) -> errors.APIError:
    if isinstance(failure, ProviderError):
        return api_error_from(failure)
    if isinstance(failure, errors.APIError):
        return failure
    return errors.internal_error()


async def _prepended(
    first: Chunk | None, rest: AsyncGenerator[Chunk, None]
) -> AsyncGenerator[Chunk, None]:
    try:
        if first is not None:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # a client gone: settle at once
