"""Which provider serves a catalog entry.

`serving_provider` is what the gateway calls: the entry's configured routes, in order, as one
provider that retries and falls back (apps.providers.fallback), with a circuit breaker per
upstream route. Providers are built per call (cheap: the connection pools behind them are shared
per base URL and process); an upstream's replica is chosen once per call, by load and by the
affinity key (the conversation's start), so that its retries and the next turn stay on it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from apps.catalog.entries import CatalogEntry, LocalRoute, UpstreamRoute
from apps.catalog.selectors import UpstreamAccess, upstream_access
from apps.catalog.upstream_models import VENDOR_DEFAULTS
from apps.protocol import errors
from apps.providers.base import Provider
from apps.providers.engine_client import EngineClient
from apps.providers.fallback import FallbackProvider
from apps.providers.local_engine import LocalEngineProvider
from apps.providers.upstream.anthropic import AnthropicProvider
from apps.providers.upstream.breaker import CircuitBreaker, route_key
from apps.providers.upstream.gemini import GeminiProvider
from apps.providers.upstream.openai import OpenAIProvider
from apps.providers.upstream.replicas import InFlightCounted, replica_choose


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


@dataclass(frozen=True)
class _Configured:
    index: int  # in entry.routes: its prices are charged
    provider: Provider
    breaker: CircuitBreaker | None


async def serving_provider(entry: CatalogEntry, *, affinity_key: str = "") -> Provider:
    """The provider that serves a call to `entry`; 404 when none of its routes is configured
    any more (a vendor's key removed since the model was looked up), as for an unknown model."""
    routes = await _configured(entry, affinity_key=affinity_key)
    if not routes:
        raise errors.model_not_found(entry.id)
    return FallbackProvider(
        [route.provider for route in routes],
        breakers=[route.breaker for route in routes],
        route_indexes=[route.index for route in routes],
    )


async def route_providers(entry: CatalogEntry, *, affinity_key: str = "") -> list[Provider]:
    """The providers of the entry's configured routes, in route order."""
    return [route.provider for route in await _configured(entry, affinity_key=affinity_key)]


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


def local_engine() -> EngineClient:
    """The client of the engine process named by PLUGSKY_ENGINE_URL."""
    return engine_client(settings.PLUGSKY_ENGINE_URL)


@functools.cache
def engine_client(url: str) -> EngineClient:
    """One client (and connection pool) per engine URL for the life of the process."""
    return EngineClient(url)


async def _configured(entry: CatalogEntry, *, affinity_key: str) -> list[_Configured]:
    configured = []
    for index, route in enumerate(entry.routes):
        if isinstance(route, LocalRoute):
            # One engine, no breaker: it answers 503 at once when it is down.
            local = LocalEngineProvider(entry, route, client=local_engine())
            configured.append(_Configured(index, local, None))
            continue
        access = upstream_access(route)
        if access is not None:
            provider = await _built(entry, route, access, affinity_key=affinity_key)
            configured.append(_Configured(index, provider, CircuitBreaker(route_key(route))))
    return configured


async def _built(
    entry: CatalogEntry, route: UpstreamRoute, access: UpstreamAccess, *, affinity_key: str
) -> Provider:
    # The replica is chosen once per call: retries of the call stay on it (prompt cache).
    base_url = await replica_choose(access.base_urls, affinity_key=affinity_key)
    provider_class = PROVIDER_CLASSES[route.provider]
    provider = provider_class(entry, route, base_url=base_url, api_key=access.api_key)
    if len(access.base_urls) > 1:  # its load counts for the next call's choice of replica
        return InFlightCounted(provider, base_url=base_url)
    return provider
