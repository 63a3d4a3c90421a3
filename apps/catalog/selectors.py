"""Reads of the model catalog: built-in entries plus the operator's catalog file."""

from __future__ import annotations

import functools

from django.conf import settings

from apps.catalog.builtin import BUILTIN_MODELS
from apps.catalog.entries import CatalogEntry
from apps.catalog.operator_file import load_operator_entries


@functools.cache
def _all_entries() -> tuple[CatalogEntry, ...]:
    operator_entries = load_operator_entries(settings.PLUGSKY_CATALOG_FILE)
    overridden = {entry.id for entry in operator_entries}
    builtin = tuple(entry for entry in BUILTIN_MODELS if entry.id not in overridden)
    return builtin + operator_entries


def _is_enabled(entry: CatalogEntry) -> bool:
    enabled = settings.PLUGSKY_LOCAL_MODELS
    return "all" in enabled or entry.id in enabled


def _is_servable(entry: CatalogEntry) -> bool:
    from apps.providers.registry import provider_for

    return _is_enabled(entry) and provider_for(entry).is_available(entry)


def catalog_models() -> list[CatalogEntry]:
    """Every model this server can serve right now, in catalog order."""
    return [entry for entry in _all_entries() if _is_servable(entry)]


def catalog_model(model_id: str) -> CatalogEntry | None:
    """The servable entry for a public id or alias, or None."""
    for entry in _all_entries():
        if model_id == entry.id or model_id in entry.aliases:
            return entry if _is_servable(entry) else None
    return None


def clear_cache() -> None:
    """Forget the loaded catalog (tests and settings changes)."""
    _all_entries.cache_clear()
