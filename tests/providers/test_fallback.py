"""FallbackProvider over scripted routes: retries, backoff, Retry-After, the next route, the
breaker, usage reset, the final status, and closing/cancelling.

The scripted failures are the ProviderErrors the shared upstream HTTP layer makes of real
answers (apps/providers/upstream/http.py), so what is retried here is what the adapters raise.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from apps.providers.base import Chunk, Embeddings, Usage
from apps.providers.errors import ProviderError
from apps.providers.fallback import FallbackProvider, RetryPolicy, all_routes_failed
from apps.providers.upstream.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from apps.providers.upstream.http import status_error, unreachable

CHAT = ChatCompletionRequest.model_validate(
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
)
NO_JITTER = RetryPolicy(jitter=0.0)


def _chunk(text: str) -> Chunk:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def _answer(status: int, body: dict[str, Any], **headers: str) -> ProviderError:
    content = json.dumps(body).encode()
    return status_error(status, headers, content, read_error=_openai_error, upstream="Fake")


def _openai_error(body: Any) -> tuple[str, str | None, str | None]:
    error = body["error"]
    return error["message"], error.get("param"), error.get("code")


def _server_error() -> ProviderError:
    return _answer(500, {"error": {"message": "boom", "type": "server_error"}})


def _rate_limited(retry_after: str) -> ProviderError:
    body = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    return _answer(429, body, **{"retry-after": retry_after})


def _bad_param() -> ProviderError:
    body = {"error": {"message": "bad temperature", "param": "temperature", "code": "invalid"}}
    return _answer(400, body)


def _refused() -> ProviderError:
    return unreachable("Fake", "is unreachable", status=502)


def _timed_out() -> ProviderError:
    return unreachable("Fake", "timed out", status=504)


HANG = "hang"  # a step that waits for ever before its first chunk


class Scripted:
    """A route whose calls play `steps` in turn: a step is a list of chunks and errors, given
    and raised in order (an error first: a failure before the first chunk), or HANG."""

    def __init__(self, name: str, *steps: Any, prompt_tokens: int = 5, bound: int = 10) -> None:
        self.name = name
        self.steps = list(steps)
        self.prompt_tokens = prompt_tokens
        self.bound = bound
        self.available = True
        self.calls = 0
        self.called = asyncio.Event()
        self.closed = 0

    def is_available(self) -> bool:
        return self.available

    def prompt_token_bound(self, request: ChatCompletionRequest | CompletionRequest) -> int:
        return self.bound

    def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        return self._play(usage)

    def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        return self._play(usage)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        step = self._next()
        if isinstance(step, ProviderError):
            raise step
        usage = Usage(prompt_tokens=self.prompt_tokens, exact=True)
        return Embeddings(vectors=np.ones((1, 3), dtype=np.float32), usage=usage)

    def _next(self) -> Any:
        self.calls += 1
        self.called.set()
        return self.steps.pop(0)

    async def _play(self, usage: Usage) -> AsyncIterator[Chunk]:
        step = self._next()
        # What a backend has counted by the time it fails: none of it may be billed.
        usage.prompt_tokens = self.prompt_tokens
        usage.upstream_request_id = f"req-{self.name}-{self.calls}"
        usage.exact = True
        usage.extra["cache_write_tokens"] = 3
        try:
            if step == HANG:
                await asyncio.Event().wait()
            for item in step:
                if isinstance(item, ProviderError):
                    raise item
                usage.completion_tokens += 1
                yield item
        finally:
            self.closed += 1


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def _collect(provider: FallbackProvider, usage: Usage) -> list[Chunk]:
    return [chunk async for chunk in provider.chat(CHAT, max_tokens=16, usage=usage)]


def _fallback(*chain: Scripted, **options: Any) -> tuple[FallbackProvider, Sleeps]:
    sleeps = Sleeps()
    options.setdefault("policy", NO_JITTER)
    return FallbackProvider(list(chain), sleep=sleeps, **options), sleeps


async def test_a_retryable_failure_is_retried_on_the_route_with_growing_waits():
    first = Scripted("a", [_server_error()], [_refused()], [_chunk("hi"), _chunk("!")])
    second = Scripted("b", [_chunk("never")])
    provider, sleeps = _fallback(first, second)
    usage = Usage()

    assert await _collect(provider, usage) == [_chunk("hi"), _chunk("!")]

    assert (first.calls, second.calls) == (3, 0)
    assert sleeps.waits == pytest.approx([0.1, 0.4])
    assert usage == Usage(
        prompt_tokens=5,
        completion_tokens=2,
        provider="a",
        route_index=0,
        upstream_request_id="req-a-3",
        exact=True,
        extra={"cache_write_tokens": 3},
    )


async def test_after_its_attempts_the_next_route_answers_and_failures_cost_nothing():
    first = Scripted("a", [_server_error()], [_timed_out()], [_server_error()], prompt_tokens=90)
    second = Scripted("b", [_chunk("ok")], prompt_tokens=4)
    provider, sleeps = _fallback(first, second)
    usage = Usage()

    assert await _collect(provider, usage) == [_chunk("ok")]

    assert (first.calls, second.calls) == (3, 1)
    assert sleeps.waits == pytest.approx([0.1, 0.4])  # no wait between routes
    assert usage == Usage(
        prompt_tokens=4,
        completion_tokens=1,
        provider="b",
        route_index=1,
        upstream_request_id="req-b-1",
        exact=True,
        extra={"cache_write_tokens": 3},
    )


async def test_a_short_retry_after_is_waited_for():
    first = Scripted("a", [_rate_limited("1.5")], [_chunk("ok")])
    provider, sleeps = _fallback(first, Scripted("b"))

    assert await _collect(provider, Usage()) == [_chunk("ok")]

    assert first.calls == 2
    assert sleeps.waits == [1.5]


async def test_a_retry_after_beyond_the_cap_goes_to_the_next_route_at_once():
    first = Scripted("a", [_rate_limited("30")])
    second = Scripted("b", [_chunk("ok")])
    provider, sleeps = _fallback(first, second)
    usage = Usage()

    assert await _collect(provider, usage) == [_chunk("ok")]

    assert (first.calls, second.calls) == (1, 1)
    assert sleeps.waits == []
    assert (usage.provider, usage.route_index) == ("b", 1)


async def test_a_fault_of_the_request_is_raised_at_once_never_retried_nor_sent_on():
    refusal = _bad_param()
    first = Scripted("a", [refusal])
    second = Scripted("b", [_chunk("never")])
    provider, sleeps = _fallback(first, second)
    usage = Usage()

    with pytest.raises(ProviderError) as raised:
        await _collect(provider, usage)

    assert raised.value is refusal
    assert (raised.value.status, raised.value.param) == (400, "temperature")
    assert raised.value.code == "invalid"
    assert (first.calls, second.calls, sleeps.waits) == (1, 0, [])
    assert usage == Usage(provider="a", route_index=0)


async def test_after_the_first_chunk_a_failure_propagates_without_retry_or_fallback():
    cut = _server_error()
    first = Scripted("a", [_chunk("one"), _chunk("two"), cut])
    second = Scripted("b", [_chunk("never")])
    provider, sleeps = _fallback(first, second)
    usage = Usage()
    received = []

    with pytest.raises(ProviderError) as raised:
        async for chunk in provider.chat(CHAT, max_tokens=16, usage=usage):
            received.append(chunk)

    assert raised.value is cut
    assert received == [_chunk("one"), _chunk("two")]
    assert (first.calls, second.calls, sleeps.waits) == (1, 0, [])
    # What ran is billed, on the route that ran it.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.provider) == (5, 2, "a")


@pytest.mark.parametrize(
    ("last_failure", "status"),
    [
        (_timed_out, 504),
        (lambda: _rate_limited("0"), 503),
        (_refused, 503),
        (_server_error, 502),
        (lambda: _answer(401, {"error": {"message": "bad key"}}), 502),
    ],
)
async def test_when_every_route_fails_the_status_follows_the_last_reason(last_failure, status):
    last = last_failure()
    first = Scripted("a", [_server_error()], [_server_error()], [_server_error()])
    second = Scripted("b", [_timed_out()], [_server_error()], [last])
    provider, _ = _fallback(first, second)
    usage = Usage()

    with pytest.raises(ProviderError) as raised:
        await _collect(provider, usage)

    error = raised.value
    assert (error.status, error.code, error.retryable) == (status, "upstream_unavailable", False)
    assert (
        error.message
        == f"Every route of this model failed (2 in all); the last one: {last.message}"
    )
    assert error.type == "server_error"
    assert (first.calls, second.calls) == (3, 3)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.extra) == (0, 0, {})


def test_no_route_at_all_is_a_503():
    error = all_routes_failed(None, routes=3)

    assert (error.status, error.code, error.retryable) == (503, "upstream_unavailable", False)
    assert error.message == (
        "No route of this model is available now (3 in all); please try again later."
    )


async def test_a_route_that_is_not_available_is_skipped():
    first = Scripted("a", [_chunk("never")])
    first.available = False
    second = Scripted("b", [_chunk("ok")])
    provider, _ = _fallback(first, second)
    usage = Usage()

    assert await _collect(provider, usage) == [_chunk("ok")]
    assert (first.calls, usage.route_index, provider.is_available()) == (0, 1, True)

    second.available = False
    assert provider.is_available() is False
    with pytest.raises(ProviderError) as raised:
        await _collect(provider, Usage())
    assert raised.value.status == 503


def test_the_prompt_bound_is_the_largest_of_the_chain():
    provider, _ = _fallback(Scripted("a", bound=100), Scripted("b", bound=250), Scripted("c"))

    assert provider.prompt_token_bound(CHAT) == 250


async def test_completions_fall_back_too():
    provider, _ = _fallback(Scripted("a", [_refused()], [_refused()], [_refused()]),
                            Scripted("b", [_chunk("ok")]))  # fmt: skip
    usage = Usage()
    prompt = CompletionRequest(model="m", prompt="hi")

    chunks = [chunk async for chunk in provider.complete(prompt, max_tokens=4, usage=usage)]

    assert (chunks, usage.provider, usage.route_index) == ([_chunk("ok")], "b", 1)


async def test_an_embedding_is_retried_then_falls_back():
    first = Scripted("a", _server_error(), _server_error(), _server_error())
    second = Scripted("b", "ok", prompt_tokens=6)
    provider, sleeps = _fallback(first, second)

    embeddings = await provider.embed(EmbeddingRequest(model="e", input="x"))

    assert embeddings.usage == Usage(prompt_tokens=6, provider="b", route_index=1, exact=True)
    assert (first.calls, second.calls) == (3, 1)
    assert sleeps.waits == pytest.approx([0.1, 0.4])


async def test_an_embedding_refused_for_the_request_is_not_retried():
    refusal = _bad_param()
    first, second = Scripted("a", refusal), Scripted("b", "ok")
    provider, _ = _fallback(first, second)

    with pytest.raises(ProviderError) as raised:
        await provider.embed(EmbeddingRequest(model="e", input="x"))

    assert raised.value is refusal
    assert (first.calls, second.calls) == (1, 0)


async def test_an_empty_stream_is_a_success():
    first = Scripted("a", [])
    provider, _ = _fallback(first, Scripted("b"))

    assert await _collect(provider, Usage()) == []
    assert (first.calls, first.closed) == (1, 1)


async def test_closing_the_stream_closes_the_route_at_once():
    first = Scripted("a", [_chunk("1"), _chunk("2"), _chunk("3")])
    provider, _ = _fallback(first)
    stream = provider.chat(CHAT, max_tokens=16, usage=Usage())

    assert await anext(stream) == _chunk("1")
    assert first.closed == 0
    await stream.aclose()  # type: ignore[attr-defined]

    assert first.closed == 1


async def test_cancelled_before_the_first_chunk_the_route_is_closed():
    first = Scripted("a", HANG)
    provider, _ = _fallback(first)
    task = asyncio.create_task(_collect(provider, Usage()))
    await first.called.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.closed == 1


async def test_cancelled_while_waiting_to_retry_it_stops_cleanly():
    first = Scripted("a", [_server_error()], [_chunk("never")])
    second = Scripted("b", [_chunk("never")])
    waiting = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.sleep(seconds)

    provider = FallbackProvider([first, second], policy=RetryPolicy(backoff_s=30.0), sleep=sleep)
    task = asyncio.create_task(_collect(provider, Usage()))
    await waiting.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=1.0)
    assert (first.calls, first.closed, second.calls) == (1, 1, 0)


def test_waits_grow_with_jitter_below_the_nominal_wait():
    policy = RetryPolicy()  # 3 attempts, 0.1 s then 0.4 s, shortened by up to a quarter
    error = _server_error()

    first_waits = [policy.wait_s(failures=1, error=error) for _ in range(200)]
    second_waits = [policy.wait_s(failures=2, error=error) for _ in range(200)]

    assert all(0.075 <= wait <= 0.1 for wait in first_waits)  # type: ignore[operator]
    assert all(0.3 <= wait <= 0.4 for wait in second_waits)  # type: ignore[operator]
    assert len(set(first_waits)) > 100  # jittered, not one fixed wait
    assert policy.wait_s(failures=3, error=error) is None


async def test_a_route_whose_breaker_is_open_is_skipped():
    policy = BreakerPolicy(failures=2, cooldown_s=30)
    breaker = CircuitBreaker("test|http://a/v1|m", policy=policy)
    await breaker.failed()
    await breaker.failed()
    first = Scripted("a", [_chunk("never")])
    second = Scripted("b", [_chunk("ok")])
    provider, _ = _fallback(first, second, breakers=[breaker, None])
    usage = Usage()

    assert await _collect(provider, usage) == [_chunk("ok")]
    assert (first.calls, usage.route_index) == (0, 1)


async def test_the_route_failures_of_a_call_open_its_breaker_and_the_request_faults_do_not():
    policy = BreakerPolicy(failures=3, cooldown_s=30)
    breaker = CircuitBreaker("test|http://a/v1|m", policy=policy)
    first = Scripted("a", [_bad_param()], [_server_error()], [_server_error()], [_server_error()])
    second = Scripted("b", [_chunk("ok")])
    provider, _ = _fallback(first, second, breakers=[breaker, None])

    with pytest.raises(ProviderError):
        await _collect(provider, Usage())
    assert await breaker.state() is BreakerState.CLOSED

    assert await _collect(provider, Usage()) == [_chunk("ok")]
    assert await breaker.state() is BreakerState.OPEN
    assert (first.calls, second.calls) == (4, 1)


async def test_a_half_open_route_gets_one_probe_not_a_series_of_retries():
    policy = BreakerPolicy(failures=1, cooldown_s=0.3)
    breaker = CircuitBreaker("test|http://a/v1|m", policy=policy)
    await breaker.failed()
    await asyncio.sleep(0.4)
    first = Scripted("a", [_server_error()], [_chunk("never")])
    second = Scripted("b", [_chunk("ok")])
    provider, sleeps = _fallback(first, second, breakers=[breaker, None])

    assert await _collect(provider, Usage()) == [_chunk("ok")]

    assert (first.calls, second.calls) == (1, 1)
    assert sleeps.waits == [pytest.approx(0.1)]  # waited, then found the breaker open again
    assert await breaker.state() is BreakerState.OPEN


async def test_the_first_chunk_closes_a_half_open_breaker():
    policy = BreakerPolicy(failures=1, cooldown_s=0.3)
    breaker = CircuitBreaker("test|http://a/v1|m", policy=policy)
    await breaker.failed()
    await asyncio.sleep(0.4)
    provider, _ = _fallback(Scripted("a", [_chunk("ok")]), breakers=[breaker])

    assert await _collect(provider, Usage()) == [_chunk("ok")]
    assert await breaker.state() is BreakerState.CLOSED


async def test_the_usage_names_the_route_by_its_index_in_the_entry():
    # Routes 0 and 2 of the entry are configured, route 1 is not and is left out of the chain.
    first = Scripted("a", [_rate_limited("60")])
    second = Scripted("b", [_chunk("ok")])
    provider, _ = _fallback(first, second, route_indexes=[0, 2])
    usage = Usage()

    assert await _collect(provider, usage) == [_chunk("ok")]
    assert (usage.provider, usage.route_index) == ("b", 2)


def test_a_chain_needs_one_breaker_and_one_index_per_route():
    with pytest.raises(ValueError):
        FallbackProvider([Scripted("a"), Scripted("b")], breakers=[None])
    with pytest.raises(ValueError):
        FallbackProvider([Scripted("a")], route_indexes=[0, 1])
    with pytest.raises(ValueError):
        FallbackProvider([])
