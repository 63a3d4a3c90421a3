"""A circuit breaker per upstream route, shared by every process through Redis.

Closed: calls go through; consecutive failures are counted, and the count lapses after a quiet
window. After `failures` of them the route is open for `cooldown_s`: calls skip it. Then it is
half-open: one probe call is let through (a lease, so a probe whose process died frees the slot
when the lease lapses); its success closes the breaker, its failure opens it again.

The state lives in Redis keys with expiry times, so no process's clock is read and a route that
is no longer called leaves nothing behind. Redis calls run on the event loop's client
(plugsky_site.redis_pool). Redis being down must never turn a working upstream
into an error: the breaker then fails open (every call goes through) and logs once per outage.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, TypeVar

import redis
from django.conf import settings

from apps.catalog.entries import UpstreamRoute
from plugsky_site.redis_pool import LuaScript, redis_pipeline

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PREFIX = "plugsky:breaker:"
# How long a tripped breaker remembers it tripped when no call comes to probe it.
_TRIPPED_TTL_MS = 24 * 3600 * 1000

# KEYS: failures, open, tripped, probe. ARGV: threshold, window ms, cooldown ms, tripped ttl ms.
# A failure once tripped (the probe's) re-opens at once; otherwise count, trip at the threshold.
_FAIL = LuaScript("""
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[4])
  return 1
end
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if failures >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
""")

# KEYS: open, tripped, probe, failures. ARGV: a token for the probe lease, its ttl ms.
# Returns 0 when the call may not go, 2 when it may and the route has no failure on record
# (closed and clean), 1 when it may otherwise (failures counted, or it holds the probe lease).
_ALLOW = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[4]) == 0 then return 2 end
  return 1
end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
""")


class Verdict(IntEnum):
    """A breaker's answer before a call: false when the call may not go."""

    REFUSED = 0
    ALLOWED = 1
    CLEAN = 2  # allowed, and the route had nothing to forget: its success writes nothing


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5  # consecutive failures that open the route
    window_s: float = 60.0  # a failure count lapses after this long without another failure
    cooldown_s: float = 30.0  # how long an open route is skipped
    probe_ttl_s: float = 30.0  # how long the half-open probe holds its lease, at most

    @classmethod
    def from_settings(cls) -> BreakerPolicy:
        default = cls()
        return cls(
            failures=getattr(settings, "PLUGSKY_BREAKER_FAILURES", default.failures),
            window_s=getattr(settings, "PLUGSKY_BREAKER_WINDOW_S", default.window_s),
            cooldown_s=getattr(settings, "PLUGSKY_BREAKER_COOLDOWN_S", default.cooldown_s),
            probe_ttl_s=getattr(settings, "PLUGSKY_BREAKER_PROBE_TTL_S", default.probe_ttl_s),
        )


class FailOpen:
    """Awaits Redis work; while Redis is down, answers `fallback` instead and logs the outage
    once (again after Redis has answered in between)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._is_down = False

    async def call(self, work: Awaitable[T], *, fallback: T) -> T:
        try:
            result = await work
        except redis.RedisError as failure:
            if not self._is_down:
                self._is_down = True
                logger.warning("Redis is unreachable, %s fails open: %s", self._what, failure)
            return fallback
        self._is_down = False
        return result


_redis = FailOpen("the upstream circuit breaker")


def route_key(route: UpstreamRoute) -> str:
    """The breaker key of a route: its API, its servers and its model."""
    return f"{route.provider}|{','.join(route.base_urls)}|{route.model}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class CircuitBreaker:
    """The breaker of one route. Cheap to make; all its state is in Redis."""

    def __init__(self, key: str, *, policy: BreakerPolicy | None = None) -> None:
        self.key = key
        self.policy = policy or BreakerPolicy.from_settings()
        self._failures, self._open, self._tripped, self._probe = (
            f"{_PREFIX}{key}:{part}" for part in ("failures", "open", "tripped", "probe")
        )

    async def allow(self) -> Verdict:
        """Whether a call may go to the route now; in half-open, for one probe only."""
        return await _redis.call(self._allow(), fallback=Verdict.ALLOWED)

    async def succeeded(self, *, verdict: Verdict = Verdict.ALLOWED) -> None:
        """The route answered: close the breaker and forget its failures. A call let through
        CLEAN skips the write (one Redis round trip per call saved); a failure another call
        counted meanwhile then stays counted, as it should: that success began before it."""
        if verdict is not Verdict.CLEAN:
            await _redis.call(self._succeed(), fallback=None)

    async def failed(self) -> None:
        """The route failed (a retryable error): count it, open the breaker at the threshold."""
        await _redis.call(self._fail(), fallback=None)

    async def state(self) -> BreakerState:
        return await _redis.call(self._state(), fallback=BreakerState.CLOSED)

    async def _allow(self) -> Verdict:
        keys = (self._open, self._tripped, self._probe, self._failures)
        token = secrets.token_hex(8)
        return Verdict(await _ALLOW.run(keys, token, _ms(self.policy.probe_ttl_s)))

    async def _succeed(self) -> None:
        keys = (self._failures, self._open, self._tripped, self._probe)
        await redis_pipeline(lambda pipeline: pipeline.delete(*keys))

    async def _fail(self) -> None:
        keys = (self._failures, self._open, self._tripped, self._probe)
        policy = self.policy
        args = (policy.failures, _ms(policy.window_s), _ms(policy.cooldown_s), _TRIPPED_TTL_MS)
        await _FAIL.run(keys, *args)

    async def _state(self) -> BreakerState:
        def queue(pipeline: Any) -> None:
            pipeline.exists(self._open)
            pipeline.exists(self._tripped)

        is_open, is_tripped = await redis_pipeline(queue)
        if is_open:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN if is_tripped else BreakerState.CLOSED
