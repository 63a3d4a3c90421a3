"""db_call: ORM work off the event loop, its connection handed back at once."""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from plugsky_site.db import db_call


def _where() -> tuple[int, bool]:
    connection.ensure_connection()
    return threading.get_ident(), connection.connection is not None


def _is_connected() -> bool:
    return connection.connection is not None


@pytest.mark.django_db(transaction=True)
async def test_from_the_event_loop_it_runs_on_a_worker_and_closes_its_connection() -> None:
    thread, was_connected = await db_call(_where)
    assert was_connected
    assert thread != threading.get_ident()
    # The same worker thread, asked again, finds its connection closed (back in the pool).
    for _ in range(8):
        assert await db_call(_is_connected) is False


@pytest.mark.django_db
def test_under_a_waiting_sync_caller_it_runs_on_the_callers_thread() -> None:
    # async_to_sync (a Celery task, Django's test client) keeps the caller's thread blocked: the
    # work runs there, inside the caller's transaction, and leaves its connection open.
    thread, was_connected = async_to_sync(db_call)(_where)
    assert thread == threading.get_ident()
    assert was_connected and connection.connection is not None


def _query_then_count() -> int:
    """How many queries this thread's connection had logged before running one more."""
    logged = len(connection.queries_log)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return logged


@pytest.mark.django_db(transaction=True)
async def test_worker_threads_keep_no_query_log(settings) -> None:
    # With DEBUG on, Django logs every query on its connection and only a request's own thread
    # ever clears it: the worker threads' logs grew by ~5 KiB per billed call.
    settings.DEBUG = True
    logged = [await db_call(_query_then_count) for _ in range(24)]
    assert logged == [0] * 24
