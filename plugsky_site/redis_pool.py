"""One bounded Redis connection pool per process, shared by the cache and the gateway's limits.

Django's RedisCache builds a client, and with it a connection pool, per cache instance, and
under ASGI `caches` hands out an instance per request context: every request opened a pool of
its own whose connections stayed open until the garbage collector found it, so connections grew
with the request count. Here every instance and every direct client use the one pool of their
URL, a BlockingConnectionPool of at most REDIS_MAX_CONNECTIONS: beyond that a caller waits up to
REDIS_POOL_TIMEOUT_S, then gets redis.ConnectionError (a 503 on /v1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property
from redis.commands.core import Script

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[str, redis.BlockingConnectionPool] = {}
_clients: dict[str, redis.Redis] = {}
# Redis calls from async code get threads of their own, so they never queue behind database
# work waiting for a pooled connection in the loop's default executor.
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="plugsky-redis")


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


class LuaScript:
    """A Lua script run by its SHA-1 (EVALSHA) once the server knows it.

    `eval` sent the whole source on every call, encoded argument by argument: profiled, the
    largest part of the gateway's Redis CPU per request. redis-py's Script loads the source again
    by itself when the server has forgotten it (a restart, SCRIPT FLUSH).
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._scripts: dict[int, Script] = {}  # by client: clients live as long as the process

    def __call__(self, keys: Sequence[Any], *args: Any) -> Any:
        client = redis_client()
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts.setdefault(id(client), client.register_script(self._source))
        return script(keys=list(keys), args=list(args))


async def redis_call(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the blocking Redis function `fn` off the event loop, on the Redis threads."""
    return await sync_to_async(fn, thread_sensitive=False, executor=_executor)(*args, **kwargs)


class _SharedPoolCacheClient(RedisCacheClient):
    def _get_connection_pool(self, write: bool) -> Any:
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        return redis_pool(self._servers[index])  # type: ignore[attr-defined]


class SharedPoolRedisCache(RedisCache):
    """Django's RedisCache on the process-wide pool of its LOCATION."""

    @cached_property
    def _cache(self) -> RedisCacheClient:
        return _SharedPoolCacheClient(self._servers, **self._options)  # type: ignore[attr-defined]
