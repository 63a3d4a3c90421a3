"""Which route serves an audio call: the entry's routes in order, the local engine or an
OpenAI-compatible upstream (apps.providers.upstream.openai_audio).

A route that fails in a way another may not (unreachable, 5xx, 429, an operator's credentials
refused) is skipped for the next, only before any byte has reached the client; a circuit
breaker per upstream route, shared with the chat routes' (Redis), skips a failing upstream.
Each route is tried once: audio calls are long, and a retry on the same route would double
the wait of a call whose upstream is struggling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from apps.catalog.entries import CatalogEntry, LocalRoute
from apps.catalog.selectors import upstream_access
from apps.protocol import errors
from apps.providers.errors import ProviderError
from apps.providers.fallback import all_routes_failed
from apps.providers.upstream.breaker import CircuitBreaker, route_key
from apps.providers.upstream.openai_audio import OpenAIAudioUpstream
from apps.providers.upstream.replicas import replica_choose

T = TypeVar("T")


@dataclass(frozen=True)
class AudioRoute:
    index: int  # in entry.routes: its prices are charged
    upstream: OpenAIAudioUpstream | None  # None: the local engine
    breaker: CircuitBreaker | None = None

    @property
    def provider(self) -> str:
        return "local" if self.upstream is None else self.upstream.name

    @property
    def upstream_model(self) -> str:
        return "" if self.upstream is None else self.upstream.model


async def audio_routes(entry: CatalogEntry) -> list[AudioRoute]:
    """The entry's configured routes in order; OpenAI's 404 when none is (a key removed)."""
    routes = []
    for index, route in enumerate(entry.routes):
        if isinstance(route, LocalRoute):
            routes.append(AudioRoute(index, None))
            continue
        access = upstream_access(route)
        if access is None:
            continue
        base_url = await replica_choose(access.base_urls, affinity_key="")
        upstream = OpenAIAudioUpstream(entry, route, base_url=base_url, api_key=access.api_key)
        routes.append(AudioRoute(index, upstream, CircuitBreaker(route_key(route))))
    if not routes:
        raise errors.model_not_found(entry.id)
    return routes


async def first_served(
    routes: list[AudioRoute], attempt: Callable[[AudioRoute], Awaitable[T]]
) -> tuple[T, AudioRoute]:
    """The result of the first route whose attempt succeeds, and that route."""
    last: ProviderError | None = None
    for route in routes:
        if route.breaker is not None and not await route.breaker.allow():
            continue
        try:
            result = await attempt(route)
        except ProviderError as error:
            if not error.retryable:
                raise  # the request's fault: every route would refuse it
            if route.breaker is not None:
                await route.breaker.failed()
            last = error
            continue
        if route.breaker is not None:
            await route.breaker.succeeded()
        return result, route
    raise all_routes_failed(last, routes=len(routes))
