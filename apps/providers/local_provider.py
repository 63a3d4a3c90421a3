"""Serves catalog entries with LocalRoute on the in-process local engine."""

from __future__ import annotations

from apps.catalog.entries import CatalogEntry


class LocalProvider:
    def is_available(self, entry: CatalogEntry) -> bool:
        return True


LOCAL_PROVIDER = LocalProvider()
