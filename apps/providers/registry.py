"""Which provider serves a catalog entry."""

from __future__ import annotations

from apps.catalog.entries import CatalogEntry, LocalRoute
from apps.providers.local_provider import LOCAL_PROVIDER, LocalProvider


def provider_for(entry: CatalogEntry) -> LocalProvider:
    if isinstance(entry.route, LocalRoute):
        return LOCAL_PROVIDER
    raise LookupError(f"no provider for route {entry.route!r}")
