"""Limits per API key, counted in Redis (shared by every web process): requests, tokens a minute.

Fixed one-minute windows per key. A request is counted when the call is admitted (endpoint.py);
its tokens when the serving layer knows its estimate, the prompt bound plus the maximum output,
as OpenAI counts them (`rate_limit_tokens_take`, from metering). Every /v1 response after
authentication carries OpenAI's `x-ratelimit-*` headers of the limits it counted against; over a
limit the caller gets OpenAI's 429 `rate_limit_exceeded` with `Retry-After`, which the SDKs honour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.protocol import errors
from plugsky_site.redis_pool import LuaScript, redis_pipeline

WINDOW_S = 60

# Adds a request's estimated tokens to its key's window unless that would pass the limit.
# KEYS[1] the window's counter; ARGV: tokens, limit, expiry (s). Returns {admitted, used}.
_TAKE_TOKENS = LuaScript("""
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local tokens = tonumber(ARGV[1])
if used + tokens > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], tokens)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, used}
""")


@dataclass(frozen=True)
class Allowance:
    kind: str  # what is counted: "requests" or "tokens"
    limit: int
    remaining: int
    reset_s: float

    def headers(self) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{self.kind}": str(self.limit),
            f"x-ratelimit-remaining-{self.kind}": str(max(self.remaining, 0)),
            f"x-ratelimit-reset-{self.kind}": f"{self.reset_s:.3f}s",
        }


class RequestLimits:
    """The allowances one /v1 request counted against; its response carries their headers."""

    def __init__(self) -> None:
        self._allowances: dict[str, Allowance] = {}

    def record(self, allowance: Allowance) -> None:
        self._allowances[allowance.kind] = allowance

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for allowance in self._allowances.values():
            headers.update(allowance.headers())
        return headers


_current_limits: ContextVar[RequestLimits | None] = ContextVar("plugsky_limits", default=None)


@contextmanager
def request_limits() -> Iterator[RequestLimits]:
    """Collect, for the request running in this context, the allowances it counts against."""
    limits = RequestLimits()
    token = _current_limits.set(limits)
    try:
        yield limits
    finally:
        _current_limits.reset(token)


def _record(allowance: Allowance) -> None:
    limits = _current_limits.get()
    if limits is not None:  # None: outside a /v1 request (a stream body, the tester)
        limits.record(allowance)


def _window() -> tuple[int, float]:
    """The current window's number and the seconds until it ends."""
    now = time.time()
    window = math.floor(now / WINDOW_S)
    return window, (window + 1) * WINDOW_S - now


async def _count_request(key_id: int, limit: int) -> Allowance:
    window, reset_s = _window()
    counter = f"plugsky:ratelimit:{key_id}:{window}"

    def queue(pipeline: Any) -> None:
        pipeline.incr(counter)
        pipeline.expire(counter, WINDOW_S * 2)

    used, _ = await redis_pipeline(queue, transaction=True)
    return Allowance("requests", limit=limit, remaining=limit - int(used), reset_s=reset_s)


async def _take_tokens(key_id: int, tokens: int, limit: int) -> tuple[bool, Allowance]:
    window, reset_s = _window()
    counter = f"plugsky:ratelimit:tokens:{key_id}:{window}"
    admitted, used = await _TAKE_TOKENS.run([counter], tokens, limit, WINDOW_S * 2)
    allowance = Allowance("tokens", limit=limit, remaining=limit - int(used), reset_s=reset_s)
    return bool(admitted), allowance


def _retry_after_s(allowance: Allowance) -> int:
    return max(1, math.ceil(allowance.reset_s))


async def rate_limit_take(*, key_id: int) -> Allowance:
    """Count one request for the key, or raise a 429 when its minute is used up."""
    limit = settings.RATE_LIMIT_REQUESTS_PER_MINUTE
    allowance = await _count_request(key_id, limit)
    _record(allowance)
    if allowance.remaining < 0:
        retry_after = _retry_after_s(allowance)
        raise errors.rate_limit_exceeded(
            f"Rate limit reached for requests on this API key: limit {limit} per minute. "
            f"Please try again in {retry_after}s.",
            type="requests",
            headers={**allowance.headers(), "Retry-After": str(retry_after)},
        )
    return allowance


async def rate_limit_tokens_take(*, key_id: int | None, tokens: int) -> None:
    """Count a call's estimated tokens for its key, or raise a 429 when they do not fit.

    `tokens` is the prompt bound plus the maximum output. key_id None (the in-browser tester) is
    not limited. The allowance is recorded for the current /v1 request's headers.
    """
    if key_id is None:
        return
    limit = settings.RATE_LIMIT_TOKENS_PER_MINUTE
    admitted, allowance = await _take_tokens(key_id, tokens, limit)
    _record(allowance)
    if admitted:
        return
    if tokens > limit:  # no window can admit it: retrying does not help
        raise errors.rate_limit_exceeded(
            f"Request too large for tokens per min (TPM) on this API key: limit {limit}, "
            f"requested {tokens}. Reduce the prompt or max_tokens.",
            type="tokens",
            headers={**allowance.headers(), "x-should-retry": "false"},
        )
    retry_after = _retry_after_s(allowance)
    used = limit - allowance.remaining
    raise errors.rate_limit_exceeded(
        f"Rate limit reached for tokens per min (TPM) on this API key: limit {limit}, "
        f"used {used}, requested {tokens}. Please try again in {retry_after}s.",
        type="tokens",
        headers={**allowance.headers(), "Retry-After": str(retry_after)},
    )
