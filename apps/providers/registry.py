"""Which provider serves a catalog entry."""

from __future__ import annotations

import functools

from django.conf import settings

from apps.catalog.entries import CatalogEntry
from apps.providers.engine_client import EngineClient


def provider_for(entry: CatalogEntry) -> EngineClient:
    if entry.local_route is not None:
        return local_engine()
    raise LookupError(f"no provider for {entry.id}'s routes")


def local_engine() -> EngineClient:
    """The client of the engine process named by PLUGSKY_ENGINE_URL."""
    return engine_client(settings.PLUGSKY_ENGINE_URL)


@functools.cache
def engine_client(url: str) -> EngineClient:
    """One client (and connection pool) per engine URL for the life of the process."""
    return EngineClient(url)
