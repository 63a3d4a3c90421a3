"""Which provider serves a catalog entry."""

from __future__ import annotations

import functools

from django.conf import settings

from apps.catalog.entries import CatalogEntry
from apps.providers.base import Provider
from apps.providers.engine_client import EngineClient
from apps.providers.local_engine import LocalEngineProvider


def provider_for(entry: CatalogEntry) -> EngineClient:
    if entry.local_route is not None:
        return local_engine()
    raise LookupError(f"no provider for {entry.id}'s routes")


def serving_provider(entry: CatalogEntry) -> Provider:
    """The provider that serves calls to `entry`."""
    route = entry.local_route
    if route is None:
        raise LookupError(f"no provider for {entry.id}'s routes")
    return LocalEngineProvider(entry, route, client=local_engine())


def local_engine() -> EngineClient:
    """The client of the engine process named by PLUGSKY_ENGINE_URL."""
    return engine_client(settings.PLUGSKY_ENGINE_URL)


@functools.cache
def engine_client(url: str) -> EngineClient:
    """One client (and connection pool) per engine URL for the life of the process."""
    return EngineClient(url)
