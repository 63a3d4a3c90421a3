"""The cases of the gateway benchmark, each run on every target in turn, round by round, so
that load coming and going on a shared machine falls on all alike.

A target is one way to reach the mock upstream: directly, through Plugsky, through LiteLLM.
Every response is checked (status, the mock's exact content, the usage) after it has arrived;
a stream must bring 20 content chunks, one token each.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field

from bench import mock_upstream, processes
from bench.http_client import Connection, ConnectionDropped, Response, request_bytes, sse_events

CHAT_TOKENS = 5
STREAM_CHUNKS = mock_upstream.ANSWER_TOKENS
PACE_MS = 5.0  # the paced mock's delay between content chunks
STALL_FACTOR = 10  # a chunk more than this many paces after the one before is a stall
MESSAGES = [{"role": "user", "content": "Say something short."}]
# After each round, time for work a server does after its answer (settlement) to land in the
# round's CPU reading rather than the next one's.
SETTLE_S = 0.2
SLOW_STREAM_TIMEOUT_S = 120.0


@dataclass
class Target:
    name: str
    chat_url: str  # the chat completions URL for the fast cases
    paced_url: str  # … and for the slow streams (the paced mock behind it)
    model: str
    paced_model: str
    headers: dict[str, str]
    pid: int  # the process (with its descendants) whose CPU a call costs
    paced_pid: int
    completed: int = 0  # calls answered in full and checked, warm-up included

    def request(self, kind: str) -> bytes:
        """The pre-encoded request of a case: `chat`, `stream` or `paced`."""
        body: dict[str, object] = {"model": self.model, "messages": MESSAGES}
        if kind == "chat":
            body["max_tokens"] = CHAT_TOKENS
        else:
            body |= {"max_tokens": STREAM_CHUNKS, "stream": True,
                     "stream_options": {"include_usage": True}}  # fmt: skip
        if kind == "paced":
            body["model"] = self.paced_model
        return request_bytes(self.paced_url if kind == "paced" else self.chat_url,
                             body=body, headers=self.headers)  # fmt: skip


class Rejected(AssertionError):
    """A response that is not the one the mock sent."""


# --- checking one response --------------------------------------------------------------------


def check_chat(response: Response) -> None:
    if response.status != 200:
        raise Rejected(f"status {response.status}: {bytes(response.body)[:300]!r}")
    document = json.loads(response.body)
    content = document["choices"][0]["message"]["content"]
    if content != mock_upstream.TOKEN_TEXT * CHAT_TOKENS:
        raise Rejected(f"content {content!r}")
    if document["usage"]["completion_tokens"] != CHAT_TOKENS:
        raise Rejected(f"usage {document['usage']}")


def content_times(response: Response) -> list[float]:
    """When each content chunk of a checked stream arrived (perf_counter)."""
    if response.status != 200:
        raise Rejected(f"status {response.status}: {bytes(response.body)[:300]!r}")
    times, contents, usage = [], [], None
    events = sse_events(response)
    for event in events:
        if event.data == "[DONE]":
            continue
        choices = event.data.get("choices") or [{}]
        content = (choices[0].get("delta") or {}).get("content")
        if content:
            times.append(event.arrived_at)
            contents.append(content)
        usage = event.data.get("usage") or usage
    # Every token in its own chunk, on every side: a gateway passes the stream through.
    if contents != [mock_upstream.TOKEN_TEXT] * STREAM_CHUNKS:
        raise Rejected(f"contents {contents}")
    if usage is None or usage["completion_tokens"] != STREAM_CHUNKS:
        raise Rejected(f"usage {usage}")
    if not events or events[-1].data != "[DONE]":
        raise Rejected("no [DONE] at the end")
    return times


# --- statistics ---------------------------------------------------------------------------------


def percentile_ms(values: list[float], percent: int) -> float:
    if len(values) == 1:
        return round(values[0] * 1000, 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1] * 1000, 3)


@dataclass
class CpuClock:
    """CPU seconds a target's process spent over the measured rounds."""

    pid: int
    spent_s: float = 0.0
    _started: float = 0.0

    def start(self) -> None:
        self._started = processes.cpu_s(self.pid)

    async def stop(self) -> None:
        await asyncio.sleep(SETTLE_S)
        self.spent_s += processes.cpu_s(self.pid) - self._started


# --- case 1: one call at a time ----------------------------------------------------------------


@dataclass
class Sequential:
    requests: int = 0
    latencies_s: list[float] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    def summary(self) -> dict[str, object]:
        result: dict[str, object] = {
            "requests": self.requests,
            "p50_ms": percentile_ms(self.latencies_s, 50),
            "p99_ms": percentile_ms(self.latencies_s, 99),
            "cpu_ms_per_request": round(self.cpu_s * 1000 / self.requests, 3),
        }
        if self.ttfts_s:
            result |= {"ttft_p50_ms": percentile_ms(self.ttfts_s, 50),
                       "ttft_p99_ms": percentile_ms(self.ttfts_s, 99)}  # fmt: skip
        return result


async def one_at_a_time(
    targets: list[Target], kind: str, *, rounds: int, per_round: int
) -> dict[str, dict[str, object]]:
    """`kind` (chat or stream) at 1 concurrent: latency, TTFT, CPU per call."""
    tallies = {target.name: Sequential() for target in targets}
    for _ in range(rounds):
        for target in targets:
            # A connection per round, opened before the clock starts: one kept open across the
            # other targets' rounds would outlive a server's keep-alive timeout (uvicorn: 5 s).
            connection = await Connection.open(target.chat_url)
            try:
                await _sequential_round(target, kind, connection, tallies[target.name], per_round)
            finally:
                connection.close()
    return {name: tally.summary() for name, tally in tallies.items()}


async def _sequential_round(
    target: Target, kind: str, connection: Connection, tally: Sequential, requests: int
) -> None:
    request = target.request(kind)
    clock = CpuClock(target.pid)
    clock.start()
    for _ in range(requests):
        response = await connection.send(request)
        if kind == "chat":
            check_chat(response)
        else:
            tally.ttfts_s.append(content_times(response)[0] - response.sent_at)
        tally.latencies_s.append(response.latency_s)
        target.completed += 1
    await clock.stop()
    tally.cpu_s += clock.spent_s
    tally.requests += requests


async def warm_up(targets: list[Target], calls: int) -> None:
    """Connection pools, caches and the key's first lookups, before anything is timed."""
    for target in targets:
        connection = await Connection.open(target.chat_url)
        paced = await Connection.open(target.paced_url)
        try:
            for _ in range(calls):
                check_chat(await connection.send(target.request("chat")))
                content_times(await connection.send(target.request("stream")))
                target.completed += 2
            content_times(await paced.send(target.request("paced")))
            target.completed += 1
        finally:
            connection.close()
            paced.close()


# --- case 2: throughput -----------------------------------------------------------------------


@dataclass
class Throughput:
    requests: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.wall_s, 1),
            "cpu_ms_per_request": round(self.cpu_s * 1000 / self.requests, 3),
            # ~1.0: the target's process kept its core busy (saturated); well below: it did not,
            # or (on a shared machine) other processes had part of its core.
            "core_busy": round(self.cpu_s / self.wall_s, 2),
            # What one core fully given to it would do: the fairer figure on a shared machine.
            "requests_per_cpu_s": round(self.requests / self.cpu_s, 1) if self.cpu_s else None,
        }


async def throughput(
    targets: list[Target], *, concurrency: int, rounds: int, round_s: float
) -> dict[str, dict[str, object]]:
    """Non-streamed chat, `concurrency` connections each sending the next call as soon as the
    last one is answered, for `round_s` per round: calls per second."""
    tallies = {target.name: Throughput() for target in targets}
    for _ in range(rounds):
        for target in targets:
            opening = (Connection.open(target.chat_url) for _ in range(concurrency))
            pool = await asyncio.gather(*opening)
            try:
                await _throughput_round(target, pool, tallies[target.name], round_s)
            finally:
                for connection in pool:
                    connection.close()
    return {name: tally.summary() for name, tally in tallies.items()}


async def _throughput_round(
    target: Target, pool: list[Connection], tally: Throughput, round_s: float
) -> None:
    request = target.request("chat")
    answered = 0

    async def keep_sending(connection: Connection) -> None:
        nonlocal answered
        while time.perf_counter() < deadline:
            check_chat(await connection.send(request))
            answered += 1

    clock = CpuClock(target.pid)
    clock.start()
    started = time.perf_counter()
    deadline = started + round_s
    await asyncio.gather(*(keep_sending(connection) for connection in pool))
    tally.wall_s += time.perf_counter() - started
    await clock.stop()
    tally.cpu_s += clock.spent_s
    tally.requests += answered
    target.completed += answered


# --- case 3: many slow streams at once --------------------------------------------------------


@dataclass
class SlowStreams:
    concurrent: int = 0
    streams: int = 0
    dropped: int = 0
    gaps_s: list[float] = field(default_factory=list)  # between consecutive content chunks
    ttfts_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        pace_s = PACE_MS / 1000
        worst = max(self.gaps_s, default=0.0)
        return {
            "concurrent": self.concurrent,
            "streams": self.streams,
            "dropped": self.dropped,
            "pace_ms": PACE_MS,
            "worst_chunk_delay_ms": round(worst * 1000, 2),
            "worst_delay_in_paces": round(worst / pace_s, 1),
            "chunk_delay_p99_ms": percentile_ms(self.gaps_s, 99) if self.gaps_s else None,
            "stalled_chunks": sum(gap > STALL_FACTOR * pace_s for gap in self.gaps_s),
            "ttft_p50_ms": percentile_ms(self.ttfts_s, 50) if self.ttfts_s else None,
            "ttft_max_ms": round(max(self.ttfts_s) * 1000, 2) if self.ttfts_s else None,
            "wall_s": round(self.wall_s, 2),
            "cpu_ms_per_stream": round(self.cpu_s * 1000 / self.streams, 3),
            "errors": self.errors[:5],
        }


async def slow_streams(
    targets: list[Target], *, streams: int, rounds: int
) -> dict[str, dict[str, object]]:
    """`streams` paced streams started at once on as many connections, held by the target
    until they end: how late a chunk came after the one before, and how many did not finish."""
    tallies = {target.name: SlowStreams(concurrent=streams) for target in targets}
    for _ in range(rounds):
        for target in targets:
            await _slow_round(target, tallies[target.name], streams)
    return {name: tally.summary() for name, tally in tallies.items()}


async def _slow_round(target: Target, tally: SlowStreams, streams: int) -> None:
    request = target.request("paced")
    pool = await asyncio.gather(*(Connection.open(target.paced_url) for _ in range(streams)))
    clock = CpuClock(target.paced_pid)
    clock.start()
    started = time.perf_counter()
    try:
        outcomes = await asyncio.gather(
            *(_held_stream(connection, request) for connection in pool), return_exceptions=True
        )
    finally:
        tally.wall_s += time.perf_counter() - started
        for connection in pool:
            connection.close()
    await clock.stop()
    tally.cpu_s += clock.spent_s
    tally.streams += streams
    for outcome in outcomes:
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            times = content_times(outcome)
        except (Rejected, ConnectionDropped, TimeoutError, OSError, ValueError, KeyError) as error:
            tally.dropped += 1
            tally.errors.append(f"{type(error).__name__}: {error}")
            continue
        target.completed += 1
        tally.ttfts_s.append(times[0] - outcome.sent_at)
        tally.gaps_s += [later - earlier for earlier, later in itertools.pairwise(times)]


async def _held_stream(connection: Connection, request: bytes) -> Response:
    return await asyncio.wait_for(connection.send(request), SLOW_STREAM_TIMEOUT_S)


# --- the soak: many calls, a mix ----------------------------------------------------------------


async def mixed_calls(target: Target, *, calls: int, concurrency: int, streams_every: int) -> None:
    """`calls` checked calls on `concurrency` connections, one in `streams_every` a 20-chunk
    stream, the rest non-streamed chats."""
    requests = {"chat": target.request("chat"), "stream": target.request("stream")}
    numbers = iter(range(calls))

    async def keep_sending(connection: Connection) -> None:
        for number in numbers:
            if number % streams_every == 0:
                content_times(await connection.send(requests["stream"]))
            else:
                check_chat(await connection.send(requests["chat"]))
            target.completed += 1

    pool = await asyncio.gather(*(Connection.open(target.chat_url) for _ in range(concurrency)))
    try:
        await asyncio.gather(*(keep_sending(connection) for connection in pool))
    finally:
        for connection in pool:
            connection.close()
