"""Real servers for tests that speak HTTP like a client would: Daphne on the test database,
and the engine process that runs the models for it (one per test process, shared)."""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db import connection

from plugsky_site.embedded import REPO_ROOT
from plugsky_site.launch import web_listener


def _test_database_url() -> str:
    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


def _stop_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, however it dies (no orphans)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_engine(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the engine process on a private unix socket; yield its PLUGSKY_ENGINE_URL."""
    folder = tempfile.mkdtemp(prefix="plugsky-engine-")
    url = f"unix:{folder}/engine.sock"
    env = {**os.environ, "PLUGSKY_ENGINE_URL": url, **(extra_env or {})}
    env.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")
    (REPO_ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
    name = f"engine-{os.getpid()}-{os.path.basename(folder)}.log"
    log_path = REPO_ROOT / "tests" / "artifacts" / name
    log = open(log_path, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.engine"],
        env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=_stop_with_parent,
    )  # fmt: skip
    try:
        _wait_until_engine_answers(url, process, log_path)
        PIDS[url] = process.pid
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


_shared_engine: dict[str, str] = {}


def shared_engine_url() -> str:
    """The engine of this test process (of this xdist worker): started on first use, stopped at
    exit, shared by every live server and worker the process starts, so models load once."""
    if "url" not in _shared_engine:
        running = run_engine()
        _shared_engine["url"] = next(running)
        atexit.register(running.close)
    return _shared_engine["url"]


PIDS: dict[str, int] = {}
"""The process id of each server these helpers started, by the URL they yielded."""


def run_server(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start Daphne on a free port against the test database; yield its base URL."""
    # The listening socket `make run` gives its web processes (TCP_NODELAY, backlog 1024:
    # Twisted's default of 50 overflowed under the fault suite's 200 concurrent connections).
    listener = web_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
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
    log = open(REPO_ROOT / "tests" / "artifacts" / f"daphne-{port}.log", "w")  # noqa: SIM115
    fd = listener.fileno()
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "--fd", str(fd), "plugsky_site.asgi:application"],
        env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd,),
    )  # fmt: skip
    listener.close()  # Daphne holds its own copy
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base_url, process)
        PIDS[base_url] = process.pid
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}; see tests/artifacts")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("daphne did not become healthy in 60 s")


def _wait_until_engine_answers(url: str, process: subprocess.Popen[bytes], log: object) -> None:
    transport = httpx.HTTPTransport(uds=url.removeprefix("unix:"))
    deadline = time.monotonic() + 60
    with httpx.Client(transport=transport, base_url="http://engine", timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the engine exited with {process.returncode}; see {log}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the engine did not answer in 60 s; see {log}")
