"""One bounded Redis connection pool per process, shared by the cache and the gateway's limits.

Django's RedisCache builds a client, and with it a connection pool, per cache instance, and
under ASGI `caches` hands out an instance per request context: every request opened a pool of
its own whose connections stayed open until the garbage collector found it, so connections grew
with the request count. Here every instance and every direct client use the one pool of their
URL, a BlockingConnectionPool of at most REDIS_MAX_CONNECTIONS: beyond that a caller waits up to
REDIS_POOL_TIMEOUT_S, then gets redis.ConnectionError (a 503 on /v1).

The gateway's own commands on every /v1 call (the key's identity, rate limits, organization
slots, the circuit breaker) run on the event loop instead, on an asyncio client of the running
loop (`redis_pipeline`, `LuaScript.run`): profiled, each call through a worker thread cost
~0.3 ms of CPU against ~0.13 ms on the loop, and a call made five of them. That pool has the
same bound, so a process holds at most twice REDIS_MAX_CONNECTIONS, and /v1 uses the threads'
pool only on its rare paths (a key's first lookup, the cache's own writes).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property
from redis.exceptions import NoScriptError

from plugsky_site.db import caller_thread_waits

_lock = threading.Lock()
_pools: dict[str, redis.BlockingConnectionPool] = {}
_clients: dict[str, redis.Redis] = {}
_loop_clients: dict[tuple[str, asyncio.AbstractEventLoop], redis.asyncio.Redis] = {}


def redis_pool(url: str) -> redis.BlockingConnectionPool:
    """The process's pool for `url` (created on first use)."""
    with _lock:
        pool = _pools.get(url)
        if pool is None:
            pool = redis.BlockingConnectionPool.from_url(
                url,
                max_connections=settings.REDIS_MAX_CONNECTIONS,
                timeout=settings.REDIS_POOL_TIMEOUT_S,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
            )
            _pools[url] = pool
        return pool


def redis_client(url: str | None = None) -> redis.Redis:
    """A client on the shared pool of `url` (default: settings.REDIS_URL)."""
    url = url or settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients.setdefault(url, redis.Redis(connection_pool=redis_pool(url)))
    return client


def loop_redis_client(url: str | None = None) -> redis.asyncio.Redis:
    """The asyncio client of `url` on the running event loop (its connections are the loop's)."""
    url = url or settings.REDIS_URL
    key = (url, asyncio.get_running_loop())
    client = _loop_clients.get(key)
    if client is None:
        with _lock:
            for gone in [known for known in _loop_clients if known[1].is_closed()]:
                del _loop_clients[gone]  # its connections died with their loop
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                url,
                max_connections=settings.REDIS_MAX_CONNECTIONS,
                timeout=settings.REDIS_POOL_TIMEOUT_S,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
            )
            client = _loop_clients.setdefault(key, redis.asyncio.Redis(connection_pool=pool))
    return client


async def redis_pipeline(
    queue: Callable[[Any], object], *, url: str | None = None, transaction: bool = False
) -> list[Any]:
    """The replies to the commands `queue` puts on a pipeline, sent in one round trip.

    On the loop's client; for a synchronous caller blocked on this coroutine (the test client,
    a Celery task) on the threads' client, inline: its loop serves that caller alone, and a
    client of a loop that lives for one call would leave its connection behind.
    """
    if caller_thread_waits():
        pipeline = redis_client(url).pipeline(transaction=transaction)
        queue(pipeline)
        return pipeline.execute()
    loop_pipeline = loop_redis_client(url).pipeline(transaction=transaction)
    queue(loop_pipeline)
    replies: list[Any] = await loop_pipeline.execute()
    return replies


class LuaScript:
    """A Lua script run by its SHA-1 (EVALSHA), loaded again when the server has forgotten it
    (a restart, SCRIPT FLUSH).

    `eval` sent the whole source on every call, encoded argument by argument: profiled, the
    largest part of the gateway's Redis CPU per request.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: Sequence[Any], *args: Any) -> Any:
        """Run it from blocking code."""
        client = redis_client()
        try:
            return client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self._source)
            return client.evalsha(self._sha, len(keys), *keys, *args)

    async def run(self, keys: Sequence[Any], *args: Any) -> Any:
        """Run it from async code, as `redis_pipeline` does its commands."""
        if caller_thread_waits():
            return self(keys, *args)
        client = loop_redis_client()
        try:
            return await client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self._source)
            return await client.evalsha(self._sha, len(keys), *keys, *args)


class _SharedPoolCacheClient(RedisCacheClient):
    def _get_connection_pool(self, write: bool) -> Any:
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        return redis_pool(self._servers[index])  # type: ignore[attr-defined]


class SharedPoolRedisCache(RedisCache):
    """Django's RedisCache on the process-wide pool of its LOCATION."""

    @cached_property
    def _cache(self) -> RedisCacheClient:
        return _SharedPoolCacheClient(self._servers, **self._options)  # type: ignore[attr-defined]
