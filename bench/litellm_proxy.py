"""The LiteLLM proxy, the benchmark's other Python gateway: installed by the bench itself into a
virtualenv of its own (created once, reused), run without a database, one worker.

The version is pinned. 1.108.0 is the newest whose `proxy` extra installs from PyPI here:
1.110.x's extra needs a `litellm-proxy` package that PyPI does not serve, and 1.108.1 to 1.109.x
pin `litellm-enterprise`/`litellm-proxy-extras` releases that it does not serve either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from plugsky_site.embedded import REPO_ROOT

VERSION = "1.108.0"
VENV = REPO_ROOT / ".data" / "bench" / "litellm-venv"
_STAMP = VENV / f".installed-litellm-{VERSION}"
# Without it LiteLLM tries to fetch its price list from the internet at start-up (three tries,
# ~7 s, and no network here); it has a copy inside the package.
_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}


def install() -> Path:
    """The proxy's command, installing `litellm[proxy]==VERSION` first if this venv lacks it
    (~2 min and ~750 MB, once)."""
    if not _STAMP.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, f"litellm[proxy]=={VERSION}"], check=True)
        _STAMP.touch()
    return VENV / "bin" / "litellm"


def config(*, models: dict[str, str], upstream_key: str, master_key: str) -> dict[str, object]:
    """Each public model name routed to an OpenAI-compatible base URL; keys checked against the
    master key (no database: no virtual keys, no spend tracking)."""
    entries = [
        {"model_name": name,
         "litellm_params": {"model": "openai/mock-llm", "api_base": base_url,
                            "api_key": upstream_key}}
        for name, base_url in models.items()
    ]  # fmt: skip
    return {"model_list": entries, "general_settings": {"master_key": master_key}}


class Proxy:
    """The proxy's process, started at once; `wait_until_alive` before use, so that its start
    (~15 s of imports, longer on a busy machine) overlaps the other targets' starts."""

    def __init__(self, command: Path, config_file: Path, port: int, log_file: Path) -> None:
        # A clean environment: no DATABASE_URL (LiteLLM would start Prisma), no proxy variables.
        env = {"PATH": os.environ["PATH"], "HOME": str(VENV), "LANG": "C.UTF-8", **_ENV}
        arguments = ["--config", str(config_file), "--host", "127.0.0.1", "--port", str(port),
                     "--num_workers", "1"]  # fmt: skip
        self.base_url = f"http://127.0.0.1:{port}"
        self._log_file = log_file
        with open(log_file, "w") as log:
            self.process = subprocess.Popen(
                [str(command), *arguments], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_until_alive(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"LiteLLM exited with {self.process.returncode}; see {self._log_file}"
                )
            try:
                response = httpx.get(f"{self.base_url}/health/liveliness", timeout=1,
                                     trust_env=False)  # fmt: skip
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"LiteLLM did not answer in 180 s; see {self._log_file}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def write_config(path: Path, document: dict[str, object]) -> Path:
    path.write_text(json.dumps(document, indent=1))  # JSON is YAML: LiteLLM reads it as is
    return path
