"""The JavaScript clients against a live server: their npm packages, installed once per test
process from this folder's package-lock.json, and the live server and key the gateway tests use.

Each test process installs into a folder of its own (a copy of this one's package files and
scripts): `npm ci` first deletes node_modules, so two processes sharing one would pull the
packages from under each other's running scripts (seen in CI as modules that vanished).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import live_key, live_server_url

__all__ = ["live_key", "live_server_url"]

CLIENTS = Path(__file__).resolve().parent
NPM_TIMEOUT_S = 120
NODE_TIMEOUT_S = 120

NodeRun = Callable[..., dict[str, Any]]


def _completed_or_fail(
    command: list[str], *, cwd: Path, timeout_s: float, environment: dict[str, str] | None = None
) -> str:
    """Run a command in `cwd`; its stdout, or the test fails with everything it printed."""
    try:
        done = subprocess.run(
            command, cwd=cwd, env=environment, capture_output=True, text=True,
            timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{command} ran over {timeout_s} s:\n{expired.stdout!r}\n{expired.stderr!r}")
    if done.returncode != 0:
        pytest.fail(f"{command} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test process's copy of the client scripts, with the exact packages of
    package-lock.json installed beside them."""
    folder = tmp_path_factory.mktemp("clients")
    for source in [CLIENTS / "package.json", CLIENTS / "package-lock.json", *CLIENTS.glob("*.mjs")]:
        shutil.copy(source, folder / source.name)
    _completed_or_fail(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, timeout_s=NPM_TIMEOUT_S
    )
    return folder


@pytest.fixture
def node(clients: Path, live_server_url: str, live_key: tuple[Any, str]) -> NodeRun:
    """Run one client script against the live server with the test's key; its JSON report."""
    _, raw_key = live_key

    def run(script: str, *, mode: str, model: str) -> dict[str, Any]:
        environment = {
            **os.environ,
            "PLUGSKY_BASE_URL": live_server_url,
            "PLUGSKY_API_KEY": raw_key,
            "PLUGSKY_MODEL": model,
            "PLUGSKY_MODE": mode,
        }
        stdout = _completed_or_fail(
            ["node", script], cwd=clients, timeout_s=NODE_TIMEOUT_S, environment=environment
        )
        result: dict[str, Any] = json.loads(stdout)
        return result

    return run
