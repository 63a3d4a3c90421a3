"""Database work from async code: run it in a worker thread and hand the connection back at once.

Django's ASGI handler gives every request a thread of its own for `sync_to_async` calls, and
that thread keeps its database connection until the request ends, so a long stream held a
PostgreSQL connection for minutes and ~90 concurrent calls exhausted the server. Here each call
returns its connection (to the pool, see settings.DATABASES) as soon as it is done, so the number
of connections is bounded by the pool, not by the calls in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.db import connections, reset_queries

P = ParamSpec("P")
T = TypeVar("T")


def _call_and_release(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        connections.close_all()  # this thread's connections only: back to the pool
        # With DEBUG on, Django logs every query in its connection's `queries_log`, which only
        # `request_started` clears, and never in these worker threads: each thread's log grew
        # by ~5 KiB per billed call up to 9,000 queries (the RSS growth of bench/test_soak.py).
        reset_queries()


async def db_call(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the sync ORM function `fn` off the event loop; its connection is released after."""
    if caller_thread_waits():
        return await sync_to_async(fn)(*args, **kwargs)
    return await sync_to_async(_call_and_release, thread_sensitive=False)(fn, *args, **kwargs)


def caller_thread_waits() -> bool:
    # A synchronous caller (async_to_sync in a Celery worker, Django's test client) is blocked on
    # this coroutine: its thread owns the connection and any open transaction, so the work runs
    # there, to see what that transaction wrote. Never the case under the ASGI server.
    return getattr(AsyncToSync.executors, "current", None) is not None
