# The benchmarks reuse the test suite's engine, live server and key fixtures.
from bench.gateway_setup import (
    litellm,
    litellm_started,
    mocks,
    plugsky_url,
    tenant,
    upstream_key,
)
from tests.conftest import engine_url
from tests.gateway.conftest import live_key, live_server_url

__all__ = [
    "engine_url",
    "litellm",
    "litellm_started",
    "live_key",
    "live_server_url",
    "mocks",
    "plugsky_url",
    "tenant",
    "upstream_key",
]
