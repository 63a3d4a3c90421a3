"""A real Celery worker on the test database and Redis, for tests that need background jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

from django.conf import settings

from plugsky_site.embedded import REPO_ROOT
from tests.live import _test_database_url, shared_engine_url


def run_worker(extra_env: dict[str, str] | None = None, *, name: str = "worker") -> Iterator[None]:
    """Start `celery worker` (threads pool) on the test database; stop it afterwards."""
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "plugsky_site.settings",
        **(extra_env or {}),
    }
    if "PLUGSKY_ENGINE_URL" not in (extra_env or {}):
        env["PLUGSKY_ENGINE_URL"] = shared_engine_url()
    (REPO_ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
    log_path = REPO_ROOT / "tests" / "artifacts" / f"celery-{name}-{os.getpid()}.log"
    log = open(log_path, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "plugsky_site", "worker", "--pool", "threads",
         "--concurrency", "4", "--loglevel", "info", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h"],
        env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_until_ready(log_path, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait_until_ready(log_path: object, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery exited with {process.returncode}; see {log_path}")
        with open(str(log_path)) as log:
            if " ready." in log.read():
                return
        time.sleep(0.2)
    raise RuntimeError(f"celery did not start in 60 s; see {log_path}")
