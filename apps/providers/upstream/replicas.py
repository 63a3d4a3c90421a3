"""Which replica of a self-hosted server takes a call: the least loaded healthy one, with
affinity on the conversation so the replica that has its prefix cached keeps getting it.

- Load is the number of calls in flight per replica, counted in Redis so that every process
  sees every other's. Each call is a member of a sorted set scored by its lease's end (Redis's
  own clock); a process that dies without ending its calls leaves members that stop counting
  when their lease ends, instead of a counter that is wrong forever.
- Health is the server's own `GET /health` (llama.cpp's server and vLLM both have one, beside
  /v1): 200 is healthy. It is polled in the background, at most every HEALTH_INTERVAL_S per
  replica and process, never on the request path; a replica not checked yet counts as healthy.
- Affinity: rendezvous hashing of the affinity key over the healthy replicas names the replica
  that takes the call, unless it has more than AFFINITY_SLACK calls in flight beyond the least
  loaded one; then the least loaded does. When no replica is healthy one is still chosen: the
  call fails on its own, and the breaker and the fallback chain deal with that.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from django.conf import settings

from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from apps.providers.base import Chunk, Embeddings, Provider, Usage
from apps.providers.upstream import http
from apps.providers.upstream.breaker import FailOpen
from plugsky_site.redis_pool import LuaScript, redis_pipeline

logger = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 5.0
HEALTH_TIMEOUT_S = 2.0
# Longer than any call (the upstream read timeout is 300 s between chunks, and streams are
# rarely longer than a few minutes); a call still running after it merely stops counting.
IN_FLIGHT_LEASE_S = 900
AFFINITY_SLACK = 2

_PREFIX = "plugsky:replica:in_flight:"

# KEYS: the replica's set. ARGV: the call's member, the lease in seconds.
_ENTER = LuaScript("""
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
""")

# KEYS: the replicas' sets. Returns each one's calls whose lease has not ended.
_COUNT = LuaScript("""
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1e6
local counts = {}
for i, key in ipairs(KEYS) do counts[i] = redis.call('ZCOUNT', key, '(' .. now, '+inf') end
return counts
""")

_redis = FailOpen("replica choice")


@dataclass
class _Health:
    is_healthy: bool = True
    checked_at: float = float("-inf")  # time.monotonic() of the last answer, or of a failure
    check: asyncio.Task[bool] | None = None


_health: dict[str, _Health] = {}


async def replica_choose(base_urls: tuple[str, ...], *, affinity_key: str) -> str:
    """The base URL of the replica that takes a call with this affinity key."""
    if not base_urls:
        raise ValueError("no replicas to choose from")
    if len(base_urls) == 1:
        return base_urls[0]
    _poll_health(base_urls)
    candidates = [url for url in base_urls if _health_of(url).is_healthy] or list(base_urls)
    ranked = sorted(candidates, key=lambda url: _rendezvous(affinity_key, url), reverse=True)
    loads = await _redis.call(_in_flight_counts(ranked), fallback=[0] * len(ranked))
    slack = getattr(settings, "PLUGSKY_REPLICA_AFFINITY_SLACK", AFFINITY_SLACK)
    least = min(loads)
    if loads[0] <= least + slack:
        return ranked[0]
    return ranked[loads.index(least)]  # the best ranked of the least loaded


@asynccontextmanager
async def replica_in_flight(base_url: str) -> AsyncIterator[None]:
    """Count a call to `base_url` as in flight, for every process, while the block runs."""
    member = secrets.token_hex(8)
    await _redis.call(_enter(base_url, member), fallback=None)
    try:
        yield
    finally:
        # Shielded: a cancelled call must still stop counting.
        await asyncio.shield(_redis.call(_leave(base_url, member), fallback=None))


class InFlightCounted:
    """A replica's provider whose calls count as in flight on it (replica_in_flight), so that
    `replica_choose` in every process sees them; used for routes with several replicas."""

    def __init__(self, provider: Provider, *, base_url: str) -> None:
        self.inner = provider  # the replica's own provider
        self._base_url = base_url
        self.name = provider.name

    def is_available(self) -> bool:
        return self.inner.is_available()

    def prompt_token_bound(
        self, request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    ) -> int:
        return self.inner.prompt_token_bound(request)

    async def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        chunks = self.inner.chat(request, max_tokens=max_tokens, usage=usage)
        async with replica_in_flight(self._base_url), _closing(chunks):
            async for chunk in chunks:
                yield chunk

    async def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        chunks = self.inner.complete(request, max_tokens=max_tokens, usage=usage)
        async with replica_in_flight(self._base_url), _closing(chunks):
            async for chunk in chunks:
                yield chunk

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        async with replica_in_flight(self._base_url):
            return await self.inner.embed(request)


@asynccontextmanager
async def _closing(chunks: AsyncIterator[Chunk]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def replica_health_check(base_url: str) -> bool:
    """Ask the replica's server for its health now and remember the answer."""
    url = base_url.rstrip("/").removesuffix("/v1") + "/health"
    is_healthy = await http.status_of(url, timeout_s=HEALTH_TIMEOUT_S) == 200
    health = _health_of(base_url)
    if health.is_healthy != is_healthy:
        logger.warning("replica %s is %s", base_url, "healthy" if is_healthy else "unhealthy")
    health.is_healthy, health.checked_at = is_healthy, time.monotonic()
    return is_healthy


def _health_of(base_url: str) -> _Health:
    return _health.setdefault(base_url, _Health())


def _poll_health(base_urls: tuple[str, ...]) -> None:
    """Start a background check of every replica whose answer is stale and not being asked."""
    now = time.monotonic()
    for url in base_urls:
        health = _health_of(url)
        if now - health.checked_at < HEALTH_INTERVAL_S or _is_running(health.check):
            continue
        health.check = asyncio.create_task(replica_health_check(url))


def _is_running(task: asyncio.Task[bool] | None) -> bool:
    # A task of a loop that has closed (a test's, a finished Celery task's) will never end.
    return task is not None and not task.done() and not task.get_loop().is_closed()


def _rendezvous(affinity_key: str, base_url: str) -> int:
    digest = hashlib.blake2b(f"{affinity_key}\0{base_url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


async def _in_flight_counts(base_urls: list[str]) -> list[int]:
    keys = [_PREFIX + url for url in base_urls]
    return [int(count) for count in await _COUNT.run(keys)]


async def _enter(base_url: str, member: str) -> None:
    await _ENTER.run([_PREFIX + base_url], member, IN_FLIGHT_LEASE_S)


async def _leave(base_url: str, member: str) -> None:
    await redis_pipeline(lambda pipeline: pipeline.zrem(_PREFIX + base_url, member))
