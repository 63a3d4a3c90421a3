"""Admission control for /v1: bounded calls in flight per process and per organization.

Both are checked before any work on the call. Per process, an in-memory count
(GATEWAY_MAX_IN_FLIGHT; over it a 503 the SDKs retry) keeps a burst from piling up threads and
database connections. Per organization, slots in a Redis sorted set shared by every process
(RATE_LIMIT_CONCURRENT_PER_ORG; over it a 429). A call's slots are released when it really ends:
for a streamed response when its body finishes or the client goes away, not when the view
returns. The stream's own wrapper releases them when the body ends or is cancelled;
`released_at_request_end` (around the ASGI app) is the backstop for a client that leaves while a
chunk is being sent, whose body Django closes without cancelling it. Every organization slot
carries a deadline (RATE_LIMIT_CONCURRENT_SLOT_TTL_S, renewed while a stream runs), so slots of a
process that died are dropped rather than leaked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import redis
from django.conf import settings
from django.http import HttpResponseBase, StreamingHttpResponse

from apps.protocol import errors
from plugsky_site.redis_pool import LuaScript, redis_pipeline

logger = logging.getLogger(__name__)

# Drops expired slots, then adds this one unless the organization is at its limit.
# KEYS[1] the organization's slots; ARGV: now (ms), deadline (ms), limit, slot id. Returns 1/0.
_TAKE_SLOT = LuaScript("""
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
""")
# Moves a held slot's deadline (and the set's) later; a slot already dropped stays dropped.
_RENEW_SLOT = LuaScript("""
if redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], ARGV[2]) == 1 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
end
return 1
""")


class _ProcessCount:
    """Calls in flight in this process (views may run on several threads' event loops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def take(self, limit: int) -> bool:
        with self._lock:
            if self.value >= limit:
                return False
            self.value += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.value -= 1


_in_flight = _ProcessCount()
# The admissions of the HTTP request running in this context, set by `released_at_request_end`.
_request_admissions: ContextVar[list[Admission] | None] = ContextVar(
    "plugsky_admissions", default=None
)


def in_flight_count() -> int:
    """Calls this process has admitted and not yet finished."""
    return _in_flight.value


def organization_slots_key(organization_id: int) -> str:
    return f"plugsky:inflight:org:{organization_id}"


def _deadline_ms() -> int:
    return int((time.time() + settings.RATE_LIMIT_CONCURRENT_SLOT_TTL_S) * 1000)


async def _take_slot(key: str, slot_id: str, limit: int) -> bool:
    now_ms = int(time.time() * 1000)
    taken = await _TAKE_SLOT.run([key], now_ms, _deadline_ms(), limit, slot_id)
    return bool(taken)


async def _renew_slot(key: str, slot_id: str) -> None:
    await _RENEW_SLOT.run([key], _deadline_ms(), slot_id)


async def _give_back_slot(key: str, slot_id: str) -> None:
    await redis_pipeline(lambda pipeline: pipeline.zrem(key, slot_id))


class Admission:
    """The slots one /v1 call holds, given back exactly once when the call ends."""

    def __init__(self) -> None:
        self._holds_process_slot = False
        self._organization_slot: tuple[str, str] | None = None  # (key, slot id)
        self._renewed_at = 0.0
        self._is_released = False

    def take_process_slot(self) -> None:
        """Admit the call into this process, or raise a 503 when it is full."""
        if not _in_flight.take(settings.GATEWAY_MAX_IN_FLIGHT):
            raise errors.service_unavailable(
                "The server is currently overloaded with other requests. "
                "Please retry your request shortly.",
                retry_after_s=1,
            )
        self._holds_process_slot = True

    async def take_organization_slot(self, *, organization_id: int, slot_id: str) -> None:
        """Admit the call for its organization, or raise a 429 when the organization is full."""
        limit = settings.RATE_LIMIT_CONCURRENT_PER_ORG
        key = organization_slots_key(organization_id)
        if not await _take_slot(key, slot_id, limit):
            raise errors.rate_limit_exceeded(
                f"Too many concurrent requests for your organization: limit {limit} in flight. "
                "Please try again when one of them has finished.",
                type="requests",
                headers={"Retry-After": "1"},
            )
        self._organization_slot = (key, slot_id)
        self._renewed_at = time.monotonic()

    async def release(self) -> None:
        if self._is_released:
            return
        self._is_released = True
        if self._holds_process_slot:
            _in_flight.give_back()
        if self._organization_slot is not None:
            try:
                await _give_back_slot(*self._organization_slot)
            except redis.RedisError:
                logger.warning("organization slot not given back; it expires", exc_info=True)

    async def release_when_done(self, response: HttpResponseBase) -> None:
        """Release now, or, for a streamed response, when its body ends or the client leaves."""
        if isinstance(response, StreamingHttpResponse) and response.is_async:
            # The handler's own iterator (not the bytes-mapping wrapper of `streaming_content`),
            # so that closing this one closes the serving stream at once.
            iterator = response._iterator  # type: ignore[attr-defined]
            response.streaming_content = self._released_after(iterator)
            admissions = _request_admissions.get()
            if admissions is not None:
                admissions.append(self)
        else:
            await self.release()

    async def _released_after(self, parts: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for part in parts:
                yield part
                await self._renew_if_due()
        finally:
            close = getattr(parts, "aclose", None)
            try:
                if close is not None:
                    await close()
            finally:
                await self.release()

    async def _renew_if_due(self) -> None:
        if self._organization_slot is None:
            return
        if time.monotonic() - self._renewed_at < settings.RATE_LIMIT_CONCURRENT_SLOT_TTL_S / 3:
            return
        self._renewed_at = time.monotonic()
        try:
            await _renew_slot(*self._organization_slot)
        except redis.RedisError:
            logger.warning("organization slot not renewed", exc_info=True)


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def released_at_request_end(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: release what each HTTP request's streams still hold once it has ended."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        admissions: list[Admission] = []
        token = _request_admissions.set(admissions)
        try:
            await app(scope, receive, send)
        finally:
            _request_admissions.reset(token)
            for admission in admissions:
                await admission.release()

    return middleware
