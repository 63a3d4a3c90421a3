"""The server's resident memory stays flat under a mixed load (a short regression of bench/).

After a warm-up that loads both models and fills the thread and connection pools, 300 more calls
of the same mix may grow the Daphne process's RSS by at most GROWTH_BOUND_MIB. The soak in
bench/test_soak.py measured about +8 MiB over 3,000 calls (~3 KiB a call, bench/README.md); the
bound here is ~40 KiB a call, so it catches a leak of a request's worth of objects per call (a
body, a client, a pool per request) without failing on the allocator's noise.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.soak import CALLS, SERVER_ENV, Soak, rss_mib, server_pid

WARM_UP = 100
REQUESTS = 300
GROWTH_BOUND_MIB = 16
# Every kind of call, the generations less often than in the soak (they cost ~150 ms of CPU
# each, the others ~4 ms), to keep this test short.
WEIGHTS = {kind: 1 for kind in CALLS} | {"models": 3}


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return SERVER_ENV


def test_rss_stays_flat_under_mixed_load(faults_server_url, tenant):
    _, key = tenant
    pid = server_pid(faults_server_url)
    soak = Soak(base_url=faults_server_url, key=key, seed=11, weights=WEIGHTS)
    asyncio.run(soak.run(WARM_UP))
    warm = rss_mib(pid)

    asyncio.run(soak.run(REQUESTS))

    grown = rss_mib(pid) - warm
    print(f"\nRSS {warm:.1f} MiB after {WARM_UP} calls, {grown:+.1f} MiB after {REQUESTS} more")
    assert not soak.unexpected, soak.unexpected
    assert grown <= GROWTH_BOUND_MIB
