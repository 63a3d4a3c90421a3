"""The JavaScript clients against a live server: their npm packages, installed once per session
from this folder's package-lock.json, and the live server and key the gateway tests use."""

from __future__ import annotations

import json
import os
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
    command: list[str], *, timeout_s: float, environment: dict[str, str] | None = None
) -> str:
    """Run a command in this folder; its stdout, or the test fails with everything it printed."""
    try:
        done = subprocess.run(
            command, cwd=CLIENTS, env=environment, capture_output=True, text=True,
            timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{command} ran over {timeout_s} s:\n{expired.stdout!r}\n{expired.stderr!r}")
    if done.returncode != 0:
        pytest.fail(f"{command} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The exact packages of package-lock.json in tests/clients/node_modules (gitignored)."""
    _completed_or_fail(["npm", "ci", "--no-audit", "--no-fund"], timeout_s=NPM_TIMEOUT_S)
    return CLIENTS / "node_modules"


@pytest.fixture
def node(node_modules: Path, live_server_url: str, live_key: tuple[Any, str]) -> NodeRun:
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
            ["node", script], timeout_s=NODE_TIMEOUT_S, environment=environment
        )
        result: dict[str, Any] = json.loads(stdout)
        return result

    return run
