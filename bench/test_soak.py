"""Soak: a live server's resident memory under a long mixed load stays flat.

3,000 calls after a 500-call warm-up (models list and retrieve, chat plain and streamed,
embeddings, and refusals: a wrong key, an unknown model, bad JSON, an invalid value, an unknown
path), 4 at a time, from tests/faults/soak.py. The Daphne process's RSS is sampled every 250
calls; results go to bench/results/soak.json and the curve is printed. The short regression of
the same load is tests/faults/test_memory.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.soak import SERVER_ENV, Soak, rss_mib, server_pid, write_results
from tests.live import run_server

pytestmark = pytest.mark.bench

WARM_UP = 500
REQUESTS = 3000
EVERY = 250
# Growth allowed after warm-up (see bench/README.md for what was measured).
GROWTH_BOUND_MIB = 40
RESULTS = Path(__file__).parent / "results" / "soak.json"


@pytest.fixture(scope="module")
def soak_server_url(django_db_setup, django_db_blocker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    yield from run_server(extra_env=SERVER_ENV)


def test_rss_stays_flat_under_a_long_mixed_load(soak_server_url, live_key):
    _, key = live_key
    pid = server_pid(soak_server_url)
    soak = Soak(base_url=soak_server_url, key=key, seed=2000)
    started = rss_mib(pid)
    asyncio.run(soak.run(WARM_UP))
    curve = [(0, round(rss_mib(pid), 1))]
    begun = time.monotonic()

    def probe(done: int) -> None:
        curve.append((done, round(rss_mib(pid), 1)))

    asyncio.run(soak.run(REQUESTS, every=EVERY, probe=probe))
    elapsed = time.monotonic() - begun

    growth = curve[-1][1] - curve[0][1]
    results = {
        "rss_mib_at_start": round(started, 1),
        "warm_up_calls": WARM_UP,
        "calls": REQUESTS,
        "seconds": round(elapsed, 1),
        "calls_per_s": round(REQUESTS / elapsed, 1),
        "rss_mib_after_calls": curve,
        "growth_mib": round(growth, 1),
        "answers": {f"{kind} {status}": n for (kind, status), n in sorted(soak.answers.items())},
    }
    write_results(RESULTS, results)
    print(f"\nRSS {started:.0f} MiB at start; after warm-up and every {EVERY} calls: {curve}")
    print(
        f"growth {growth:+.1f} MiB over {REQUESTS} calls in {elapsed:.0f} s; {results['answers']}"
    )
    assert not soak.unexpected, soak.unexpected
    assert growth <= GROWTH_BOUND_MIB, curve
