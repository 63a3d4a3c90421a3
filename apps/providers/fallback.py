"""One provider over a catalog entry's routes, in order: retries, then the next route.

The gateway sees a single provider. Until the first chunk is yielded nothing has reached the
client, so a retryable failure (the backend's fault) is retried on the same route with
exponential backoff and jitter, honouring the backend's Retry-After when it is short enough to
wait for, then the next route is tried. A route whose circuit breaker is open is skipped. A
non-retryable failure is the request's own fault: every route would refuse it too, so it is
raised at once. Once a chunk has been yielded the route is committed: a failure then propagates
as it is and the gateway ends the stream with an error event.

A failed attempt costs nothing: the Usage is reset before every attempt and after a failure, and
names the provider and route of the attempt, so what is billed is the answering route's usage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from apps.providers.base import Chunk, Embeddings, Provider, Usage
from apps.providers.errors import ProviderError
from apps.providers.upstream.breaker import CircuitBreaker, Verdict

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]

_ENDED: Chunk = {}  # stands for the first chunk of a stream that had none


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # per route, the first included
    backoff_s: float = 0.1  # before the second attempt; multiplied by `growth` for each next
    growth: float = 4.0
    jitter: float = 0.25  # each wait is shortened by a random fraction up to this
    # A Retry-After longer than this is not waited for: the next route is tried instead.
    retry_after_cap_s: float = 2.0

    def wait_s(self, *, failures: int, error: ProviderError) -> float | None:
        """How long to wait before the next attempt on the route after `failures` failed
        ones, or None: go to the next route."""
        if failures >= self.attempts:
            return None
        backoff = self.backoff_s * self.growth ** (failures - 1)
        backoff *= 1 - random.uniform(0, self.jitter)
        if error.retry_after_s is None:
            return backoff
        if error.retry_after_s > self.retry_after_cap_s:
            return None
        return max(backoff, error.retry_after_s)


class FallbackProvider:
    """The routes of one entry as one Provider. `breakers[i]` guards `chain[i]` (None: no
    breaker); `route_indexes[i]` is its route's index in the entry's routes, recorded in the
    usage (default: its position in the chain, when no route was left out of it)."""

    name = "fallback"

    def __init__(
        self,
        chain: Sequence[Provider],
        *,
        breakers: Sequence[CircuitBreaker | None] | None = None,
        route_indexes: Sequence[int] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not chain:
            raise ValueError("a fallback chain needs at least one route")
        breakers = [None] * len(chain) if breakers is None else breakers
        route_indexes = range(len(chain)) if route_indexes is None else route_indexes
        # strict: one breaker and one index per route, or a ValueError
        self._routes = list(zip(route_indexes, chain, breakers, strict=True))
        self._policy = policy or RetryPolicy()
        self._sleep = sleep

    def is_available(self) -> bool:
        return any(provider.is_available() for _, provider, _ in self._routes)

    def prompt_token_bound(
        self, request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    ) -> int:
        return max(provider.prompt_token_bound(request) for _, provider, _ in self._routes)

    def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        return self._stream(
            lambda provider: provider.chat(request, max_tokens=max_tokens, usage=usage), usage
        )

    def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        return self._stream(
            lambda provider: provider.complete(request, max_tokens=max_tokens, usage=usage), usage
        )

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        async def attempt(index: int, provider: Provider) -> Embeddings:
            embeddings = await provider.embed(request)
            embeddings.usage.provider, embeddings.usage.route_index = provider.name, index
            return embeddings

        embeddings, passed = await self._first_success(attempt)
        await passed.succeeded()
        return embeddings

    async def _stream(
        self, call: Callable[[Provider], AsyncIterator[Chunk]], usage: Usage
    ) -> AsyncIterator[Chunk]:
        async def attempt(index: int, provider: Provider) -> tuple[AsyncIterator[Chunk], Chunk]:
            _reset(usage, provider=provider.name, route_index=index)
            try:
                stream = call(provider)
                return stream, await _first_chunk(stream)
            except ProviderError:
                _reset(usage, provider=provider.name, route_index=index)
                raise

        (stream, first), passed = await self._first_success(attempt)
        # From here the route is committed: no retry, no fallback; a failure propagates.
        try:
            await passed.succeeded()
            if first is not _ENDED:
                yield first
                async for chunk in stream:
                    yield chunk
        finally:
            await _close(stream)

    async def _first_success(
        self, attempt: Callable[[int, Provider], Awaitable[T]]
    ) -> tuple[T, _Passed]:
        """The result of the first attempt that succeeds, with its route's breaker and verdict
        (the caller records the success), waiting between the attempts on a route."""
        last: ProviderError | None = None
        for index, provider, breaker in self._routes:
            if not provider.is_available():
                continue
            failures = 0
            # The breaker is asked before every attempt: others' failures may open it meanwhile,
            # and a half-open route gets one probe, not a series of retries.
            verdict = Verdict.ALLOWED
            while breaker is None or (verdict := await breaker.allow()):
                try:
                    return await attempt(index, provider), _Passed(breaker, verdict)
                except ProviderError as error:
                    last = await _judged(error, breaker)
                failures += 1
                wait_s = self._policy.wait_s(failures=failures, error=last)
                if wait_s is None:
                    break
                await self._sleep(wait_s)
        raise all_routes_failed(last, routes=len(self._routes))


async def _first_chunk(stream: AsyncIterator[Chunk]) -> Chunk:
    """The stream's first chunk (_ENDED if it has none); the stream is closed if that fails
    or the wait is cancelled."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return _ENDED
    except BaseException:
        await _close(stream)
        raise


async def _close(stream: AsyncIterator[Chunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _judged(error: ProviderError, breaker: CircuitBreaker | None) -> ProviderError:
    """Raise a failure that is the request's fault; count one of the route's in its breaker."""
    if not error.retryable:
        raise error
    if breaker is not None:
        await breaker.failed()
    return error


@dataclass(frozen=True)
class _Passed:
    """The breaker (None: the route has none) that let a successful attempt through, and how."""

    breaker: CircuitBreaker | None
    verdict: Verdict

    async def succeeded(self) -> None:
        if self.breaker is not None:
            await self.breaker.succeeded(verdict=self.verdict)


def _reset(usage: Usage, *, provider: str, route_index: int) -> None:
    """Usage as if nothing had run, on the given route."""
    for spec in dataclasses.fields(Usage):
        if spec.default_factory is not dataclasses.MISSING:
            setattr(usage, spec.name, spec.default_factory())
        else:
            setattr(usage, spec.name, spec.default)
    usage.provider, usage.route_index = provider, route_index


def all_routes_failed(last: ProviderError | None, *, routes: int) -> ProviderError:
    """The error for a call no route could serve, with OpenAI's status for the last reason."""
    if last is None:
        return ProviderError(
            f"No route of this model is available now ({routes} in all); please try again later.",
            status=503,
            code="upstream_unavailable",
        )
    if last.status == 504:
        status = 504
    # A refused connection is coded upstream_unavailable by the HTTP layer, with a 502.
    elif last.status in (429, 503) or last.code == "upstream_unavailable":
        status = 503
    else:
        status = 502
    return ProviderError(
        f"Every route of this model failed ({routes} in all); the last one: {last.message}",
        status=status,
        code="upstream_unavailable",
        retry_after_s=last.retry_after_s,
    )
