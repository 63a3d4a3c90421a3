"""Which provider serves a catalog entry.

`provider_for` is the local engine's client, as the gateway calls it today. `route_provider`
and `route_providers` build the providers of an entry's upstream routes, one per call (cheap:
the connection pools behind them are shared per base URL and process); local routes are not in
them yet, the engine is still reached through `provider_for`.
"""

from __future__ import annotations

import functools
from typing import Protocol

from django.conf import settings

from apps.catalog.entries import CatalogEntry, UpstreamRoute
from apps.catalog.selectors import UpstreamAccess, upstream_access
from apps.catalog.upstream_models import VENDOR_DEFAULTS
from apps.providers.base import Provider
from apps.providers.engine_client import EngineClient
from apps.providers.upstream.anthropic import AnthropicProvider
from apps.providers.upstream.gemini import GeminiProvider
from apps.providers.upstream.openai import OpenAIProvider
from apps.providers.upstream.replicas import replica_choose


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


class _ProviderClass(Protocol):
    """What every upstream provider's constructor takes."""

    def __call__(
        self, entry: CatalogEntry, route: UpstreamRoute, /, *, base_url: str, api_key: str
    ) -> Provider: ...


# By UpstreamRoute.provider: the API the route speaks (UPSTREAM_PROVIDERS).
PROVIDER_CLASSES: dict[str, _ProviderClass] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
}


async def route_providers(entry: CatalogEntry, *, affinity_key: str = "") -> list[Provider]:
    """The providers of the entry's upstream routes whose credentials are set, in route order.

    The chain skips unconfigured routes, so a provider's position in it is not always its
    route's index in `entry.routes`."""
    chain: list[Provider] = []
    for route in entry.upstream_routes:
        access = upstream_access(route)
        if access is not None:
            chain.append(await _built(entry, route, access, affinity_key=affinity_key))
    return chain


async def route_provider(
    entry: CatalogEntry, route: UpstreamRoute, *, affinity_key: str = ""
) -> Provider:
    """The provider of one upstream route; LookupError while its credentials are missing."""
    access = upstream_access(route)
    if access is None:
        needed = route.api_key_env or VENDOR_DEFAULTS[route.provider].base_url_env
        raise LookupError(f"{entry.id}: the {route.provider} route to {route.model} is not "
                          f"configured (set {needed})")  # fmt: skip
    return await _built(entry, route, access, affinity_key=affinity_key)


async def _built(
    entry: CatalogEntry, route: UpstreamRoute, access: UpstreamAccess, *, affinity_key: str
) -> Provider:
    # The replica is chosen once per call: retries of the call stay on it (prompt cache).
    base_url = await replica_choose(access.base_urls, affinity_key=affinity_key)
    provider_class = PROVIDER_CLASSES[route.provider]
    return provider_class(entry, route, base_url=base_url, api_key=access.api_key)
