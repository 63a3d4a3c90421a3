"""Reads of the model catalog: built-in entries plus the operator's catalog file."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from django.conf import settings

from apps.catalog.builtin import BUILTIN_MODELS
from apps.catalog.entries import CatalogEntry, UpstreamRoute
from apps.catalog.operator_file import load_operator_entries
from apps.catalog.upstream_models import UPSTREAM_MODELS, VENDOR_DEFAULTS


@functools.cache
def _all_entries() -> tuple[CatalogEntry, ...]:
    operator_entries = load_operator_entries(settings.PLUGSKY_CATALOG_FILE)
    overridden = {entry.id for entry in operator_entries}
    builtin = tuple(
        entry for entry in BUILTIN_MODELS + UPSTREAM_MODELS if entry.id not in overridden
    )
    return builtin + operator_entries


def _is_enabled(entry: CatalogEntry) -> bool:
    # PLUGSKY_LOCAL_MODELS picks what the local engine loads; upstream models are picked by
    # their credentials, at lookup time (`upstream_access`).
    if entry.local_route is None:
        return True
    enabled = settings.PLUGSKY_LOCAL_MODELS
    return "all" in enabled or entry.id in enabled


def catalog_load() -> None:
    """Load the catalog now, so that a malformed operator file stops start-up."""
    configured_models()


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


@dataclass(frozen=True)
class UpstreamAccess:
    """How to reach an upstream route: its replicas' base URLs and its key ("" = no auth)."""

    base_urls: tuple[str, ...]
    api_key: str


def _environment(name: str) -> str:
    return os.environ.get(name, "").strip()


def upstream_access(route: UpstreamRoute) -> UpstreamAccess | None:
    """How to reach `route` now, or None while its credentials are missing. Read from the
    environment on every call (a few dict lookups) rather than cached, so a key set or removed
    is seen by the next request."""
    api_key = _environment(route.api_key_env) if route.api_key_env else ""
    if route.api_key_env and not api_key:
        return None
    if route.base_urls:
        return UpstreamAccess(base_urls=route.base_urls, api_key=api_key)
    vendor = VENDOR_DEFAULTS[route.provider]
    override = _environment(vendor.base_url_env)
    if not api_key and not override:
        return None  # a vendor's own API with no key: a self-hosted server needs its base URL
    return UpstreamAccess(base_urls=((override or vendor.base_url).rstrip("/"),), api_key=api_key)


def _is_servable(entry: CatalogEntry) -> bool:
    """Asked per request, so providers answer it cheaply (the engine's client from a cached
    model list; the engine itself checks installed weights once)."""
    if entry.local_route is not None and _local_is_available(entry):
        return True
    return any(upstream_access(route) is not None for route in entry.upstream_routes)


def _local_is_available(entry: CatalogEntry) -> bool:
    from apps.providers.registry import local_engine

    return local_engine().is_available(entry)


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
