"""Requests-per-minute limits per API key, counted in Redis (shared by every web process).

A fixed one-minute window per key: INCR and EXPIRE in one round trip. Every /v1 response carries
OpenAI's `x-ratelimit-*-requests` headers; over the limit the caller gets OpenAI's 429
`rate_limit_exceeded` with `Retry-After`, which the SDKs honour.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.gateway import errors

WINDOW_S = 60


@dataclass(frozen=True)
class Allowance:
    limit: int
    remaining: int
    reset_s: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(max(self.remaining, 0)),
            "x-ratelimit-reset-requests": f"{self.reset_s:.3f}s",
        }


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _count(key_id: int, limit: int) -> Allowance:
    now = time.time()
    window = math.floor(now / WINDOW_S)
    counter = f"plugsky:ratelimit:{key_id}:{window}"
    pipeline = _client(settings.REDIS_URL).pipeline()
    pipeline.incr(counter)
    pipeline.expire(counter, WINDOW_S * 2)
    used, _ = pipeline.execute()
    reset_s = (window + 1) * WINDOW_S - now
    return Allowance(limit=limit, remaining=limit - int(used), reset_s=reset_s)


_count_async = sync_to_async(_count, thread_sensitive=False)  # Redis only: no DB connection


async def rate_limit_take(*, key_id: int) -> Allowance:
    """Count one request for the key, or raise a 429 when its minute is used up."""
    limit = settings.RATE_LIMIT_REQUESTS_PER_MINUTE
    allowance = await _count_async(key_id, limit)
    if allowance.remaining < 0:
        retry_after = max(1, math.ceil(allowance.reset_s))
        raise errors.APIError(
            f"Rate limit reached for requests on this API key: limit {limit} per minute. "
            f"Please try again in {retry_after}s.",
            status=429,
            type="requests",
            code="rate_limit_exceeded",
            headers={**allowance.headers(), "Retry-After": str(retry_after)},
        )
    return allowance
