# The benchmarks reuse the test suite's engine, live server and key fixtures.
from tests.conftest import engine_url
from tests.gateway.conftest import live_key, live_server_url

__all__ = ["engine_url", "live_key", "live_server_url"]
