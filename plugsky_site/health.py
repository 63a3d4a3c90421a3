"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests."""
    return JsonResponse({"status": "ok"})


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.warning("readiness: database does not answer", exc_info=True)
        return False


def _redis_answers() -> bool:
    try:
        return bool(cache._cache.get_client().ping())  # type: ignore[attr-defined]
    except Exception:
        logger.warning("readiness: redis does not answer", exc_info=True)
        return False


async def _engine_answers() -> bool:
    from apps.providers.registry import local_engine

    if await local_engine().health() is not None:
        return True
    logger.warning("readiness: the model engine does not answer")
    return False


async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to take traffic: the database, Redis and the model engine all answer."""
    checks = {
        "database": await sync_to_async(_database_answers)(),
        "redis": await sync_to_async(_redis_answers)(),
        "engine": await _engine_answers(),
    }
    ready = all(checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JsonResponse(body, status=200 if ready else 503)
