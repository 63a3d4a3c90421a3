"""What Plugsky adds to a call through an operator upstream route, side by side with the upstream
called directly (issue 11, point 12; the targets are issue 13's).

The upstream is bench/mock_upstream.py, a fast OpenAI-compatible mock in its own process. The
gateway is a live Daphne with authentication, rate limits (raised, still checked on every call),
the credit hold and metering on, routing the operator model `bench-mock` to the mock. In one
run, round by round, the same client requests go to the mock directly and through Plugsky, so
load that comes and goes on a shared machine falls on both alike:

- chat, not streamed (5 tokens), at 1 and 8 concurrent: p50/p99 latency, and the added;
- a 20-chunk stream at 1 and 8 concurrent: time to first token and to the end, and the added;
- CPU ms per request of the web process (the mock's for the direct rounds), from /proc.

The web process is pinned to one core, the mock and this load generator to the other. After the
run, billing must be exact: the UsageRecords add up to the tokens the mock served through the
gateway, to the token, and `billing_reconcile` passes. Results go to
bench/results/gateway_overhead.json and the table is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.db.models import Sum

from apps.accounts.models import Organization
from apps.usage.models import UsageRecord
from bench import mock_upstream
from tests.faults.helpers import (
    LedgerState,
    assert_ledger_consistent,
    ledger_state,
    set_balance,
    wait_until_settled,
)
from tests.faults.soak import server_pid, write_results
from tests.live import run_server

pytestmark = pytest.mark.bench

MODEL_ID = "bench-mock"
UPSTREAM_MODEL = "mock-llm"
KEY_ENV = "BENCH_MOCK_UPSTREAM_KEY"
CHAT_TOKENS = 5
STREAM_CHUNKS = mock_upstream.ANSWER_TOKENS
BALANCE_MICROS = 50_000_000
# (kind, concurrency, rounds, requests per round and target): ~1,900 calls per target.
SCENARIOS = (("chat", 1, 8, 50), ("chat", 8, 4, 160), ("stream", 1, 8, 25), ("stream", 8, 4, 80))
WARM_UP = 30
# After each round, time for work the server does after its answer (settlement) to land in the
# round's CPU reading rather than the next one's.
SETTLE_S = 0.2
RESULTS = Path(__file__).parent / "results" / "gateway_overhead.json"
MESSAGES = [{"role": "user", "content": "Say something short."}]


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    model: str
    pid: int  # the process whose CPU a request on this target costs


@dataclass
class Sample:
    latency_s: float
    ttft_s: float | None = None


@dataclass
class Tally:
    samples: list[Sample] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0


@dataclass
class Row:
    kind: str
    concurrency: int
    target: str
    requests: int
    p50_ms: float
    p99_ms: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    requests_per_s: float
    cpu_ms_per_request: float


# --- processes -------------------------------------------------------------------------------


def _cores() -> tuple[int, int] | None:
    """(web core, load core), or None where this process may not use two cores."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


def _pin(pid: int, core: int) -> None:
    """Pin every thread of `pid` (affinity is per thread; new threads inherit their creator's)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {core})


def _cpu_s(pid: int) -> float:
    """User + system CPU time of every thread of `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class MockUpstream:
    base_url: str
    pid: int

    def served(self) -> dict[str, dict[str, int]]:
        document: dict[str, dict[str, dict[str, int]]] = httpx.get(f"{self.base_url}/stats").json()
        return document["served"]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.mock_upstream"],
        cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        yield MockUpstream(base_url=f"http://127.0.0.1:{port}", pid=process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def upstream_key() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def gateway_url(django_db_setup, django_db_blocker, tmp_path_factory, mock, upstream_key):
    route = {"provider": "openai", "base_url": f"{mock.base_url}/v1", "model": UPSTREAM_MODEL,
             "api_key_env": KEY_ENV}  # fmt: skip
    model = {"id": MODEL_ID, "kind": "chat", "context_length": 8192,
             "input_price_micros_per_mtok": 150_000, "output_price_micros_per_mtok": 600_000,
             "routes": [route]}  # fmt: skip
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.json"
    catalog.write_text(json.dumps({"models": [model]}))
    yield from run_server(
        extra_env={
            "PLUGSKY_CATALOG_FILE": str(catalog),
            KEY_ENV: upstream_key,
            # On, and checked on every call; high enough that this load is never refused.
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
            "RATE_LIMIT_TOKENS_PER_MINUTE": "1000000000",
            # As in production: Django's debug query log off.
            "DEBUG": "false",
        }
    )


@pytest.fixture
def tenant(transactional_db):
    """A committed organization with credit and a key the live server can see."""
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create
    from apps.onboarding.services import user_create

    user = user_create(email="bench-overhead@example.com")
    organization = personal_organization_for(user=user)
    set_balance(organization, BALANCE_MICROS)
    _, raw_key = api_key_create(organization=organization, created_by=user, name="bench")
    return organization, raw_key


# --- one call ------------------------------------------------------------------------------


def _body(target: Target, *, stream: bool) -> bytes:
    body: dict[str, object] = {"model": target.model, "messages": MESSAGES}
    if stream:
        body |= {"max_tokens": STREAM_CHUNKS, "stream": True,
                 "stream_options": {"include_usage": True}}  # fmt: skip
    else:
        body["max_tokens"] = CHAT_TOKENS
    return json.dumps(body).encode()


async def _chat(client: httpx.AsyncClient, target: Target, body: bytes) -> Sample:
    started = time.perf_counter()
    response = await client.post(target.url, content=body, headers=target.headers)
    latency = time.perf_counter() - started
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["choices"][0]["message"]["content"] == mock_upstream.TOKEN_TEXT * CHAT_TOKENS
    assert document["usage"]["completion_tokens"] == CHAT_TOKENS
    return Sample(latency_s=latency)


async def _stream(client: httpx.AsyncClient, target: Target, body: bytes) -> Sample:
    started = time.perf_counter()
    first: float | None = None
    contents: list[str] = []
    usage = None
    async with client.stream("POST", target.url, content=body, headers=target.headers) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if content:
                first = first or time.perf_counter()
                contents.append(content)
            usage = chunk.get("usage") or usage
    latency = time.perf_counter() - started
    # Every token in its own chunk, on both sides: the gateway passes the stream through.
    assert contents == [mock_upstream.TOKEN_TEXT] * STREAM_CHUNKS, contents
    assert usage is not None and usage["completion_tokens"] == STREAM_CHUNKS, usage
    assert first is not None
    return Sample(latency_s=latency, ttft_s=first - started)


# --- rounds --------------------------------------------------------------------------------

Call = Callable[[], Awaitable[Sample]]


async def _round(call: Call, *, concurrency: int, requests: int) -> list[Sample]:
    remaining = iter(range(requests))
    samples: list[Sample] = []

    async def worker() -> None:
        for _ in remaining:
            samples.append(await call())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def _measure(
    client: httpx.AsyncClient, targets: list[Target], scenario: tuple[str, int, int, int]
) -> list[Row]:
    kind, concurrency, rounds, requests = scenario
    once = _stream if kind == "stream" else _chat
    calls: dict[str, Call] = {}
    for target in targets:
        body = _body(target, stream=kind == "stream")
        calls[target.name] = functools.partial(once, client, target, body)
    tallies = {target.name: Tally() for target in targets}
    for _ in range(rounds):
        for target in targets:
            tally = tallies[target.name]
            cpu, started = _cpu_s(target.pid), time.perf_counter()
            tally.samples += await _round(
                calls[target.name], concurrency=concurrency, requests=requests
            )
            tally.wall_s += time.perf_counter() - started
            await asyncio.sleep(SETTLE_S)
            tally.cpu_s += _cpu_s(target.pid) - cpu
    return [_row(kind, concurrency, name, tally) for name, tally in tallies.items()]


def _percentile_ms(values: list[float], percent: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1] * 1000, 2)


def _row(kind: str, concurrency: int, target: str, tally: Tally) -> Row:
    latencies = [sample.latency_s for sample in tally.samples]
    ttfts = [sample.ttft_s for sample in tally.samples if sample.ttft_s is not None]
    count = len(latencies)
    return Row(
        kind=kind,
        concurrency=concurrency,
        target=target,
        requests=count,
        p50_ms=_percentile_ms(latencies, 50),
        p99_ms=_percentile_ms(latencies, 99),
        ttft_p50_ms=_percentile_ms(ttfts, 50) if ttfts else None,
        ttft_p99_ms=_percentile_ms(ttfts, 99) if ttfts else None,
        requests_per_s=round(count / tally.wall_s, 1),
        cpu_ms_per_request=round(tally.cpu_s * 1000 / count, 2),
    )


async def _warm_up(client: httpx.AsyncClient, targets: list[Target]) -> None:
    """Connection pools, caches and the key's first lookups, before anything is timed."""
    for target in targets:
        for stream in (False, True):
            once = _stream if stream else _chat
            body = _body(target, stream=stream)
            for _ in range(WARM_UP):
                await once(client, target, body)


async def _run(targets: list[Target]) -> list[Row]:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:
        await _warm_up(client, targets)
        rows = []
        for scenario in SCENARIOS:
            rows.extend(await _measure(client, targets, scenario))
        return rows


# --- report --------------------------------------------------------------------------------


def _table(rows: list[Row]) -> str:
    lines = [
        "| case | concurrent | target | p50 (ms) | p99 (ms) | TTFT p50 (ms) | TTFT p99 (ms) "
        "| req/s | CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ttft = (row.ttft_p50_ms, row.ttft_p99_ms) if row.ttft_p50_ms is not None else ("", "")
        lines.append(
            f"| {row.kind} | {row.concurrency} | {row.target} | {row.p50_ms} | {row.p99_ms} "
            f"| {ttft[0]} | {ttft[1]} | {row.requests_per_s} | {row.cpu_ms_per_request} |"
        )
    return "\n".join(lines)


def _added(rows: list[Row]) -> list[dict[str, object]]:
    """Plugsky minus direct, per case."""
    by_case: dict[tuple[str, int], dict[str, Row]] = {}
    for row in rows:
        by_case.setdefault((row.kind, row.concurrency), {})[row.target] = row
    added = []
    for (kind, concurrency), pair in by_case.items():
        direct, plugsky = pair["direct"], pair["Plugsky"]
        entry: dict[str, object] = {
            "case": kind, "concurrent": concurrency,
            "p50_ms": round(plugsky.p50_ms - direct.p50_ms, 2),
            "p99_ms": round(plugsky.p99_ms - direct.p99_ms, 2),
            "web_cpu_ms_per_request": plugsky.cpu_ms_per_request,
        }  # fmt: skip
        if plugsky.ttft_p50_ms is not None and direct.ttft_p50_ms is not None:
            entry["ttft_p50_ms"] = round(plugsky.ttft_p50_ms - direct.ttft_p50_ms, 2)
        added.append(entry)
    return added


# --- the benchmark -------------------------------------------------------------------------


@contextlib.contextmanager
def _pinned_here(core: int | None) -> Iterator[None]:
    """This (load-generating) thread on `core` for the block."""
    before = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def _httpx_logs_off() -> Iterator[None]:
    """httpx logs every request at INFO: the load generator's time, not the targets'."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def test_gateway_overhead_through_an_upstream_route(gateway_url, mock, upstream_key, tenant):
    organization, key = tenant
    web_pid = server_pid(gateway_url)
    cores = _cores()
    if cores is not None:
        _pin(web_pid, cores[0])
        _pin(mock.pid, cores[1])
    direct_key = secrets.token_urlsafe(16)
    targets = [
        Target("direct", f"{mock.base_url}/v1/chat/completions",
               {"Authorization": f"Bearer {direct_key}", "Content-Type": "application/json"},
               UPSTREAM_MODEL, mock.pid),
        Target("Plugsky", f"{gateway_url}/v1/chat/completions",
               {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
               MODEL_ID, web_pid),
    ]  # fmt: skip
    before = ledger_state(organization)
    load_started = os.getloadavg()
    with _pinned_here(cores[1] if cores else None), _httpx_logs_off():
        rows = asyncio.run(_run(targets))
    added = _added(rows)
    results = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average_before": load_started,
        "load_average_after": os.getloadavg(),
        "pinned_cores": cores,
        "rows": [asdict(row) for row in rows],
        "added": added,
    }
    write_results(RESULTS, results)
    print(f"\nload average before {load_started}, after {results['load_average_after']}")
    print(_table(rows))
    print(json.dumps(added, indent=1))

    _assert_billed_exactly(organization, mock.served()[upstream_key], since=before)
    # Every call direct went to its own key, never through the gateway's.
    assert mock.served()[direct_key]["calls"] == sum(r.requests for r in rows) // 2 + 2 * WARM_UP


def _assert_billed_exactly(
    organization: Organization, served: dict[str, int], *, since: LedgerState
) -> None:
    state = wait_until_settled(organization)
    assert_ledger_consistent(state, since=since)
    records = UsageRecord.objects.filter(organization=organization)
    billed = records.aggregate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    assert records.count() == served["calls"]
    assert records.exclude(status=200).count() == 0
    assert billed == {"prompt": served["prompt_tokens"], "completion": served["completion_tokens"]}
    call_command("billing_reconcile")  # raises CommandError on any drift
