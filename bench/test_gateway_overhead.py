"""The gateway benchmark (issue 13, point 7): the same calls to the mock upstream directly,
through Plugsky and through the LiteLLM proxy, in one run, the targets taking turns round by
round so that load coming and going on a shared machine falls on all three alike.

    make bench-gateway

Plugsky is a live Daphne with authentication, rate limits (raised, still checked on every
call), the credit hold, metering and settlement on, routing `bench-mock` to the mock. LiteLLM
runs from its own virtualenv (bench/litellm_proxy.py), no database, one worker, with a master
key. Each web process is pinned to the first core; the mocks and this load generator to the
second. The cases (bench/gateway_cases.py): non-streamed chat and 20-chunk streams at 1
concurrent; non-streamed chat at full throughput; many slow streams held at once. After the
run, billing must be exact. Results go to bench/results/gateway.json; the table is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from pathlib import Path

import pytest

from bench import gateway_cases, gateway_report, litellm_proxy, processes
from bench.gateway_cases import Target
from bench.gateway_setup import MODEL_ID, PACED_MODEL_ID, UPSTREAM_MODEL, billing_truth
from tests.faults.helpers import ledger_state
from tests.faults.soak import server_pid, write_results

pytestmark = pytest.mark.bench

RESULTS = Path(__file__).parent / "results" / "gateway.json"
WARM_UP = 30  # calls of each kind per target before anything is timed
# Per target: 8 rounds of 50 chats and of 25 streams at 1 concurrent; 3 rounds of 3 s at
# 32 concurrent (meant to keep one web process busy: see `core_busy`; BENCH_CONCURRENCY to
# change it); 2 rounds of 256 slow streams at once (BENCH_SLOW_STREAMS to change it).
ROUNDS = 8
CHATS_PER_ROUND, STREAMS_PER_ROUND = 50, 25
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
THROUGHPUT_ROUNDS, THROUGHPUT_ROUND_S = 3, 3.0
SLOW_STREAMS, SLOW_ROUNDS = int(os.environ.get("BENCH_SLOW_STREAMS", "256")), 2
SETTINGS = {"warm_up": WARM_UP, "rounds": ROUNDS, "chats_per_round": CHATS_PER_ROUND,
            "streams_per_round": STREAMS_PER_ROUND, "throughput_concurrency": CONCURRENCY,
            "throughput_rounds": THROUGHPUT_ROUNDS, "throughput_round_s": THROUGHPUT_ROUND_S,
            "slow_streams": SLOW_STREAMS, "slow_rounds": SLOW_ROUNDS,
            "pace_ms": gateway_cases.PACE_MS}  # fmt: skip


def _targets(mocks, plugsky_url: str, plugsky_key: str, litellm) -> list[Target]:
    direct_key = secrets.token_urlsafe(16)
    web_pid = server_pid(plugsky_url)
    json_headers = {"Content-Type": "application/json"}

    def through(name: str, base_url: str, key: str, pid: int) -> Target:
        url = f"{base_url}/v1/chat/completions"
        return Target(name, url, url, MODEL_ID, PACED_MODEL_ID,
                      {"Authorization": f"Bearer {key}", **json_headers}, pid, pid)  # fmt: skip

    direct = Target("direct", f"{mocks.fast.base_url}/v1/chat/completions",
                    f"{mocks.paced.base_url}/v1/chat/completions", UPSTREAM_MODEL, UPSTREAM_MODEL,
                    {"Authorization": f"Bearer {direct_key}", **json_headers},
                    mocks.fast.pid, mocks.paced.pid)  # fmt: skip
    return [
        direct,
        through("Plugsky", plugsky_url, plugsky_key, web_pid),
        through("LiteLLM", litellm.base_url, litellm.master_key, litellm.pid),
    ]


async def _run(targets: list[Target]) -> dict[str, dict[str, dict[str, object]]]:
    cases: dict[str, dict[str, dict[str, object]]] = {}
    steps = {
        "warm_up": lambda: gateway_cases.warm_up(targets, WARM_UP),
        "chat_1": lambda: gateway_cases.one_at_a_time(
            targets, "chat", rounds=ROUNDS, per_round=CHATS_PER_ROUND
        ),
        "stream_1": lambda: gateway_cases.one_at_a_time(
            targets, "stream", rounds=ROUNDS, per_round=STREAMS_PER_ROUND
        ),
        "throughput": lambda: gateway_cases.throughput(
            targets, concurrency=CONCURRENCY, rounds=THROUGHPUT_ROUNDS, round_s=THROUGHPUT_ROUND_S
        ),
        "slow_streams": lambda: gateway_cases.slow_streams(
            targets, streams=SLOW_STREAMS, rounds=SLOW_ROUNDS
        ),
    }
    for name, step in steps.items():
        started = time.monotonic()
        result = await step()
        print(f"\n{name}: {time.monotonic() - started:.1f} s", flush=True)
        if result is not None:
            cases[name] = result
    return cases


# litellm_started first: the proxy's start overlaps Plugsky's.
def test_gateway_side_by_side(litellm_started, plugsky_url, mocks, upstream_key, tenant, litellm):
    organization, key = tenant
    targets = _targets(mocks, plugsky_url, key, litellm)
    direct, plugsky, proxy = targets
    cores = processes.cores()
    if cores is not None:
        for pid in (plugsky.pid, proxy.pid):
            processes.pin(pid, cores[0])
        for pid in (mocks.fast.pid, mocks.paced.pid):
            processes.pin(pid, cores[1])
    before = ledger_state(organization)
    rss_start = {target.name: processes.rss_mib(target.pid) for target in targets}
    load_started = os.getloadavg()
    started = time.monotonic()
    with processes.pinned_here(cores[1] if cores else None):
        cases = asyncio.run(_run(targets))
    rss = {target.name: {"start": rss_start[target.name], "end": processes.rss_mib(target.pid)}
           for target in targets}  # fmt: skip
    billing = billing_truth(organization, mocks.served_to(upstream_key), since=before)
    rows = gateway_report.target_rows(cases, rss, billing)
    results = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average_before": load_started,
        "load_average_after": os.getloadavg(),
        "measured_s": round(time.monotonic() - started, 1),
        "pinned_cores": cores,
        "litellm_version": litellm_proxy.VERSION,
        "settings": SETTINGS,
        "cases": cases,
        "rss_mib": rss,
        "billing": billing,
        "table": rows,
    }
    write_results(RESULTS, results)
    print(f"\nload average before {load_started}, after {results['load_average_after']}")
    print(gateway_report.markdown(rows))
    print(json.dumps(cases, indent=1))

    assert billing["passed"], billing["problems"]
    # Each call reached the mock once and was counted to the key it came with: the direct
    # calls under their own key, LiteLLM's under its upstream key.
    assert mocks.served_to(direct.headers["Authorization"][7:])["calls"] == direct.completed
    assert mocks.served_to(litellm.upstream_key)["calls"] >= proxy.completed
