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


@functools.cache
def configured_models() -> tuple[CatalogEntry, ...]:
    """Every model this deployment is configured to serve, whether it can right now or not."""
    return tuple(entry for entry in _all_entries() if _is_enabled(entry))


@functools.cache
def _configured_by_name() -> dict[str, CatalogEntry]:
    names: dict[str, CatalogEntry] = {}
    for entry in configured_models():
        for name in (*entry.aliases, entry.id):
            names[name] = entry
    return names


def _is_servable(entry: CatalogEntry) -> bool:
    """Asked per request, so providers answer it cheaply (the engine's client from a cached
    model list; the engine itself checks installed weights once)."""
    from apps.providers.registry import provider_for

    return provider_for(entry).is_available(entry)


def catalog_models() -> list[CatalogEntry]:
    """Every model this server can serve, in catalog order."""
    return [entry for entry in configured_models() if _is_servable(entry)]


def catalog_model(model_id: str) -> CatalogEntry | None:
    """The servable entry for a public id or alias, or None."""
    entry = _configured_by_name().get(model_id)
    return entry if entry is not None and _is_servable(entry) else None


def clear_cache() -> None:
    """Forget the loaded catalog (tests and settings changes)."""
    _all_entries.cache_clear()
    configured_models.cache_clear()
    _configured_by_name.cache_clear()
