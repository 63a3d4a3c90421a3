"""Replica choice: health from real loopback servers' /health, in-flight counts in this test
process's Redis database, affinity by rendezvous hashing, the least loaded when the affine
replica is busy."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from apps.providers.base import Usage
from apps.providers.upstream import replicas
from apps.providers.upstream.replicas import (
    InFlightCounted,
    replica_choose,
    replica_health_check,
    replica_in_flight,
)


class _HealthServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    status = 200
    delay_s = 0.0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HealthHandler)
        self.paths: list[str] = []
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    server: _HealthServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        time.sleep(self.server.delay_s)
        body = b'{"status": "ok"}' if self.server.status == 200 else b'{"error": "loading"}'
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_health_known(monkeypatch):
    monkeypatch.setattr(replicas, "_health", {})


@pytest.fixture
def servers() -> Iterator[Callable[[int], list[_HealthServer]]]:
    started: list[_HealthServer] = []

    def start(count: int) -> list[_HealthServer]:
        for _ in range(count):
            server = _HealthServer()
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            started.append(server)
        return started[-count:]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


async def _healthy(count: int, servers) -> tuple[str, ...]:
    urls = tuple(server.base_url for server in servers(count))
    for url in urls:
        assert await replica_health_check(url) is True
    return urls


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


async def test_health_is_the_servers_own_endpoint_beside_v1(servers):
    up, loading = servers(2)
    loading.status = 503

    assert await replica_health_check(up.base_url) is True
    assert await replica_health_check(loading.base_url + "/") is False
    assert await replica_health_check(_closed_port_url()) is False
    assert (up.paths, loading.paths) == (["/health"], ["/health"])


async def test_the_same_key_goes_to_the_same_replica(servers):
    urls = await _healthy(4, servers)

    chosen = {await replica_choose(urls, affinity_key="conversation-1") for _ in range(10)}
    spread = {await replica_choose(urls, affinity_key=f"conversation-{n}") for n in range(40)}

    assert len(chosen) == 1
    assert len(spread) >= 3  # keys spread over the replicas
    # Rendezvous hashing: taking away another replica does not move the conversation.
    (affine,) = chosen
    others = tuple(url for url in urls if url != affine)
    assert await replica_choose((affine, *others[1:]), affinity_key="conversation-1") == affine


async def test_a_busy_affine_replica_gives_way_to_the_least_loaded(servers):
    urls = await _healthy(2, servers)
    affine = await replica_choose(urls, affinity_key="conversation-1")
    (other,) = (url for url in urls if url != affine)

    async with replica_in_flight(affine), replica_in_flight(affine):
        # Two more than the other one: within the slack, affinity holds.
        assert await replica_choose(urls, affinity_key="conversation-1") == affine
        async with replica_in_flight(affine):
            assert await replica_choose(urls, affinity_key="conversation-1") == other
            async with replica_in_flight(other):
                assert await replica_choose(urls, affinity_key="conversation-1") == affine

    assert await replica_choose(urls, affinity_key="conversation-1") == affine


async def test_the_least_loaded_of_several_takes_the_call(servers):
    urls = await _healthy(3, servers)
    affine = await replica_choose(urls, affinity_key="k")
    idle = next(url for url in urls if url != affine)
    busy = [url for url in urls if url != idle]
    entered = [replica_in_flight(url) for url in busy for _ in range(3)]
    for calls in entered:
        await calls.__aenter__()

    assert await replica_choose(urls, affinity_key="k") == idle

    for calls in entered:
        await calls.__aexit__(None, None, None)
    assert await replica_choose(urls, affinity_key="k") == affine


async def test_a_cancelled_call_stops_counting(servers):
    urls = await _healthy(2, servers)
    affine = await replica_choose(urls, affinity_key="k")
    entered = asyncio.Semaphore(0)

    async def call() -> None:
        async with replica_in_flight(affine):
            entered.release()
            await asyncio.Event().wait()

    tasks = [asyncio.create_task(call()) for _ in range(3)]
    for _ in tasks:
        await entered.acquire()
    assert await replica_choose(urls, affinity_key="k") != affine

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert await replica_choose(urls, affinity_key="k") == affine


async def test_calls_of_a_crashed_process_stop_counting_when_their_lease_ends(servers, monkeypatch):
    urls = await _healthy(2, servers)
    affine = await replica_choose(urls, affinity_key="k")
    monkeypatch.setattr(replicas, "IN_FLIGHT_LEASE_S", 0.5)
    leaked = [replica_in_flight(affine) for _ in range(3)]  # kept: never closed, never left
    for calls in leaked:
        await calls.__aenter__()  # and its process dies

    assert await replica_choose(urls, affinity_key="k") != affine
    await asyncio.sleep(0.6)
    assert await replica_choose(urls, affinity_key="k") == affine


async def test_an_unhealthy_replica_is_avoided(servers):
    up, down = servers(2)
    down.status = 503
    urls = (up.base_url, down.base_url)
    await replica_health_check(up.base_url)
    await replica_health_check(down.base_url)

    chosen = {await replica_choose(urls, affinity_key=f"conversation-{n}") for n in range(20)}

    assert chosen == {up.base_url}


async def test_with_every_replica_unhealthy_one_is_still_chosen(servers):
    down = servers(3)
    urls = tuple(server.base_url for server in down)
    for server in down:
        server.status = 503
        assert await replica_health_check(server.base_url) is False

    chosen = await replica_choose(urls, affinity_key="k")

    for server in down:
        server.status = 200
        assert await replica_health_check(server.base_url) is True
    # The same choice as among all of them healthy: affinity over all, the call then fails.
    assert await replica_choose(urls, affinity_key="k") == chosen


async def test_health_is_polled_in_the_background_never_on_the_request_path(servers):
    slow, fast = servers(2)
    slow.delay_s, slow.status = 1.5, 503  # answers within the health timeout
    urls = (slow.base_url, fast.base_url)

    began = time.monotonic()
    first_choices = [await replica_choose(urls, affinity_key=f"k{n}") for n in range(5)]
    assert time.monotonic() - began < 1.0  # nobody waited for the slow /health
    assert set(first_choices) <= set(urls)

    for url in urls:  # the checks the first call started, still running in the background
        check = replicas._health_of(url).check
        assert check is not None
        await check

    chosen = {await replica_choose(urls, affinity_key=f"k{n}") for n in range(10)}
    assert chosen == {fast.base_url}
    assert (slow.paths, fast.paths) == (["/health"], ["/health"])  # once per interval, not per call


async def test_one_replica_needs_no_choice_and_none_is_an_error():
    assert await replica_choose(("http://127.0.0.1:9/v1",), affinity_key="k") == (
        "http://127.0.0.1:9/v1"
    )
    with pytest.raises(ValueError):
        await replica_choose((), affinity_key="k")


async def test_with_redis_down_affinity_still_chooses_and_calls_still_run(servers, settings):
    urls = await _healthy(3, servers)
    affine = await replica_choose(urls, affinity_key="k")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    async with replica_in_flight(affine):
        assert await replica_choose(urls, affinity_key="k") == affine


class _Streaming:
    """A provider whose chat streams one chunk, then waits until it is released."""

    name = "openai"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def chat(self, request, *, max_tokens, usage):  # type: ignore[no-untyped-def]
        yield {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
        await self.release.wait()


async def test_a_streaming_call_counts_on_its_replica_until_its_stream_ends(servers):
    urls = await _healthy(2, servers)
    affine = await replica_choose(urls, affinity_key="k")
    inner = _Streaming()
    counted = InFlightCounted(inner, base_url=affine)  # type: ignore[arg-type]
    streams = [counted.chat(None, max_tokens=1, usage=Usage()) for _ in range(3)]  # type: ignore[arg-type]
    for stream in streams:
        await anext(stream)  # three calls streaming on the affine replica
    assert await replica_choose(urls, affinity_key="k") != affine

    await streams[0].aclose()  # a client gone
    inner.release.set()
    for stream in streams[1:]:
        assert [chunk async for chunk in stream] == []  # the rest ended normally

    assert await replica_choose(urls, affinity_key="k") == affine
