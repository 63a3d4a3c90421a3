"""The memory of Plugsky's web process over many gateway calls (issue 13, target 4): its RSS
may grow by at most 20 MB over 100,000 calls after a warm-up. Opt-in, as it takes minutes (at
the 500 calls/s target; far longer today), with the number of calls configurable:

    BENCH_SOAK_REQUESTS=100000 make bench-gateway-soak    # BENCH_SOAK_WARM_UP=2000 by default

The calls go through the operator route to the mock upstream (bench/gateway_setup.py), 8 at a
time, one in 5 a 20-chunk stream, the others non-streamed chats; every answer is checked. The
web process is pinned to the first core, the mocks and this load generator to the second; its
RSS (VmRSS, /proc) is read after the warm-up and after each tenth of the calls. Billing must be
exact afterwards, as after every benchmark run. Results go to bench/results/gateway_soak.json.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from bench import gateway_cases, processes
from bench.gateway_cases import Target
from bench.gateway_setup import MODEL_ID, PACED_MODEL_ID, billing_truth
from tests.faults.helpers import ledger_state
from tests.faults.soak import server_pid, write_results

pytestmark = pytest.mark.bench

REQUESTS = int(os.environ.get("BENCH_SOAK_REQUESTS", "0"))
WARM_UP = int(os.environ.get("BENCH_SOAK_WARM_UP", "2000"))
CONCURRENCY = 8
STREAMS_EVERY = 5
SAMPLES = 10
GROWTH_LIMIT_MB = 20
RESULTS = Path(__file__).parent / "results" / "gateway_soak.json"


async def _soak(target: Target, web_pid: int) -> list[dict[str, float]]:
    """(calls after the warm-up, RSS in MB) after the warm-up and after each tenth."""

    async def calls(count: int) -> None:
        await gateway_cases.mixed_calls(
            target, calls=count, concurrency=CONCURRENCY, streams_every=STREAMS_EVERY
        )
        await asyncio.sleep(gateway_cases.SETTLE_S)  # settlement after the last answers

    await calls(WARM_UP)
    samples = [{"calls": 0, "rss_mb": _rss_mb(web_pid)}]
    done = 0
    for tenth in range(1, SAMPLES + 1):
        count = REQUESTS * tenth // SAMPLES - done
        await calls(count)
        done += count
        samples.append({"calls": done, "rss_mb": _rss_mb(web_pid)})
        print(f"\n{done} calls: {samples[-1]['rss_mb']} MB", flush=True)
    return samples


def _rss_mb(pid: int) -> float:
    return round(processes.rss_mib(pid) * 1024 * 1024 / 1_000_000, 1)


@pytest.mark.skipif(
    not REQUESTS, reason="opt-in: set BENCH_SOAK_REQUESTS (make bench-gateway-soak)"
)
def test_web_process_memory_stays_flat(plugsky_url, mocks, upstream_key, tenant):
    organization, key = tenant
    web_pid = server_pid(plugsky_url)
    url = f"{plugsky_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    target = Target("Plugsky", url, url, MODEL_ID, PACED_MODEL_ID, headers, web_pid, web_pid)
    cores = processes.cores()
    if cores is not None:
        processes.pin(web_pid, cores[0])
        for pid in (mocks.fast.pid, mocks.paced.pid):
            processes.pin(pid, cores[1])
    before = ledger_state(organization)
    rss_before_warm_up_mb = _rss_mb(web_pid)
    load_started, started = os.getloadavg(), time.monotonic()
    with processes.pinned_here(cores[1] if cores else None):
        samples = asyncio.run(_soak(target, web_pid))
    elapsed_s = time.monotonic() - started
    growth_mb = round(samples[-1]["rss_mb"] - samples[0]["rss_mb"], 1)
    billing = billing_truth(organization, mocks.served_to(upstream_key), since=before)
    write_results(RESULTS, {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average_before": load_started, "load_average_after": os.getloadavg(),
        "warm_up": WARM_UP, "requests": REQUESTS, "concurrency": CONCURRENCY,
        "streams_every": STREAMS_EVERY, "elapsed_s": round(elapsed_s, 1),
        "calls_per_s": round((WARM_UP + REQUESTS) / elapsed_s, 1),
        "rss_before_warm_up_mb": rss_before_warm_up_mb, "samples": samples,
        "growth_mb": growth_mb, "billing": billing,
    })  # fmt: skip
    print(f"\nRSS after the warm-up {samples[0]['rss_mb']} MB, after {REQUESTS} calls "
          f"{samples[-1]['rss_mb']} MB: {growth_mb:+} MB (limit {GROWTH_LIMIT_MB})")  # fmt: skip

    assert billing["passed"], billing["problems"]
    assert target.completed == WARM_UP + REQUESTS
    assert growth_mb <= GROWTH_LIMIT_MB, samples
