# The benchmarks reuse the test suite's live server and key fixtures.
from tests.gateway.conftest import live_key, live_server_url

__all__ = ["live_key", "live_server_url"]
