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


@functools.cache
def _servable_by_name() -> dict[str, CatalogEntry]:
    """Servable entries by id and alias. Installed weights don't change while a process runs,
    so availability (a filesystem look-up per weight part) is checked once, not per request."""
    names: dict[str, CatalogEntry] = {}
    for entry in _all_entries():
        if _is_servable(entry):
            for name in (*entry.aliases, entry.id):
                names[name] = entry
    return names


def catalog_models() -> list[CatalogEntry]:
    """Every model this server can serve, in catalog order."""
    servable = set(_servable_by_name().values())
    return [entry for entry in _all_entries() if entry in servable]


def catalog_model(model_id: str) -> CatalogEntry | None:
    """The servable entry for a public id or alias, or None."""
    return _servable_by_name().get(model_id)


def clear_cache() -> None:
    """Forget the loaded catalog (tests and settings changes)."""
    _all_entries.cache_clear()
    _servable_by_name.cache_clear()
