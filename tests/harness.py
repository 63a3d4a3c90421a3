"""Point the test run at real PostgreSQL and Redis before Django reads its settings.

Loaded with `-p tests.harness` (pyproject addopts), i.e. before pytest-django sets Django up.
Uses the servers on 127.0.0.1:5432 / :6379 when they answer, otherwise starts the embedded ones
(plugsky_site/embedded.py) under .data/test-*. The xdist controller decides once and its workers
inherit the environment; each worker then gets its own Redis database number.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from plugsky_site import embedded


def _use_local_services() -> bool:
    """PLUGSKY_TEST_SERVICES=embedded skips the local servers (to exercise the fallback)."""
    return os.environ.get("PLUGSKY_TEST_SERVICES", "auto") != "embedded"


def _database_url() -> str:
    if _use_local_services() and embedded.port_answers("127.0.0.1", 5432):
        return "postgres://postgres@127.0.0.1:5432/plugsky"
    return embedded.ensure_postgres(embedded.DATA_DIR / "test-postgres")


def _redis_url() -> str:
    if _use_local_services() and embedded.port_answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    return embedded.ensure_redis(embedded.DATA_DIR / "test-redis")


def _with_database_number(url: str, number: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


def _configure() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")
    os.environ.setdefault("PLUGSKY_ENV", "test")
    if not os.environ.get("PLUGSKY_TEST_DATABASE_URL"):
        os.environ["PLUGSKY_TEST_DATABASE_URL"] = _database_url()
        os.environ["PLUGSKY_TEST_REDIS_URL"] = _redis_url()
    os.environ["DATABASE_URL"] = os.environ["PLUGSKY_TEST_DATABASE_URL"]
    # Each worker gets its own Redis database, counted up from the base URL's number + 1 (so
    # database 0 stays a developer's `make run`'s, and two runs can use different bases).
    base_url = os.environ["PLUGSKY_TEST_REDIS_URL"]
    base = int(urlsplit(base_url).path.strip("/") or 0)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    number = 1 + (base + worker) % 15
    os.environ["REDIS_URL"] = _with_database_number(base_url, number)


_configure()
