"""What the gateway benchmarks stand on: the mock upstreams, Plugsky routed to them, LiteLLM
routed to them, a paying organization, and the billing truth checked after every run."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum

from apps.accounts.models import Organization
from apps.usage.models import UsageRecord
from bench import gateway_cases, litellm_proxy
from tests.faults.helpers import (
    LedgerState,
    assert_ledger_consistent,
    set_balance,
    wait_until_settled,
)
from tests.live import run_server

MODEL_ID = "bench-mock"  # the public model, routed to the fast mock
PACED_MODEL_ID = "bench-mock-paced"  # … to the mock that paces its streams
UPSTREAM_MODEL = "mock-llm"
KEY_ENV = "BENCH_MOCK_UPSTREAM_KEY"
BALANCE_MICROS = 50_000_000
BENCH_DIR = Path(__file__).parent


@dataclass(frozen=True)
class MockUpstream:
    base_url: str
    pid: int

    def served(self) -> dict[str, dict[str, int]]:
        response = httpx.get(f"{self.base_url}/stats", trust_env=False)
        document: dict[str, dict[str, dict[str, int]]] = response.json()
        return document["served"]


@dataclass(frozen=True)
class Mocks:
    fast: MockUpstream
    paced: MockUpstream

    def served_to(self, key: str) -> dict[str, int]:
        """What both mocks served to the bearer `key`, added up."""
        total = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        for mock in (self.fast, self.paced):
            for name, value in mock.served().get(key, {}).items():
                total[name] += value
        return total


def run_mock(*arguments: str) -> Generator[MockUpstream, None, None]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.mock_upstream", *arguments],
        cwd=BENCH_DIR.parent, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        yield MockUpstream(base_url=f"http://127.0.0.1:{port}", pid=process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def mocks() -> Iterator[Mocks]:
    fast = run_mock()
    paced = run_mock("--pace-ms", str(gateway_cases.PACE_MS))
    try:
        yield Mocks(fast=next(fast), paced=next(paced))
    finally:
        fast.close()
        paced.close()


@pytest.fixture(scope="module")
def upstream_key() -> str:
    """The key Plugsky calls the mocks with: what the mocks served to it is what Plugsky must
    have billed."""
    return secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def plugsky_url(django_db_setup, django_db_blocker, tmp_path_factory, mocks, upstream_key):
    models = []
    for model_id, mock in ((MODEL_ID, mocks.fast), (PACED_MODEL_ID, mocks.paced)):
        route = {"provider": "openai", "base_url": f"{mock.base_url}/v1", "model": UPSTREAM_MODEL,
                 "api_key_env": KEY_ENV}  # fmt: skip
        models.append({"id": model_id, "kind": "chat", "context_length": 8192,
                       "input_price_micros_per_mtok": 150_000,
                       "output_price_micros_per_mtok": 600_000, "routes": [route]})  # fmt: skip
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.json"
    catalog.write_text(json.dumps({"models": models}))
    yield from run_server(
        extra_env={
            "PLUGSKY_CATALOG_FILE": str(catalog),
            KEY_ENV: upstream_key,
            # On, and checked on every call; high enough that this load is never refused:
            # requests and tokens a minute, and calls in flight, per organization and (503
            # beyond it; 64 by default) per process, which must hold the slow streams.
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
            "RATE_LIMIT_TOKENS_PER_MINUTE": "1000000000",
            "RATE_LIMIT_CONCURRENT_PER_ORG": "4096",
            "GATEWAY_MAX_IN_FLIGHT": "4096",
            # As in production: Django's debug query log off.
            "DEBUG": "false",
        }
    )


@dataclass(frozen=True)
class LiteLLM:
    base_url: str
    pid: int
    master_key: str
    upstream_key: str


@pytest.fixture(scope="module")
def litellm_started(tmp_path_factory, mocks) -> Iterator[tuple[litellm_proxy.Proxy, str, str]]:
    """The proxy's process, not yet answering: ask for this fixture before the slower ones."""
    command = litellm_proxy.install()
    folder = tmp_path_factory.mktemp("litellm")
    master_key, upstream_key = f"sk-{secrets.token_hex(16)}", secrets.token_urlsafe(16)
    models = {MODEL_ID: f"{mocks.fast.base_url}/v1", PACED_MODEL_ID: f"{mocks.paced.base_url}/v1"}
    document = litellm_proxy.config(models=models, upstream_key=upstream_key, master_key=master_key)
    config_file = litellm_proxy.write_config(folder / "config.yaml", document)
    port = _free_port()
    log = BENCH_DIR.parent / "tests" / "artifacts" / f"litellm-{port}.log"
    log.parent.mkdir(exist_ok=True)
    proxy = litellm_proxy.Proxy(command, config_file, port, log)
    try:
        yield proxy, master_key, upstream_key
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def litellm(litellm_started) -> LiteLLM:
    proxy, master_key, upstream_key = litellm_started
    proxy.wait_until_alive()
    return LiteLLM(proxy.base_url, proxy.process.pid, master_key, upstream_key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tenant(transactional_db):
    """A committed organization with credit and a key the live server can see."""
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create
    from apps.onboarding.services import user_create

    user = user_create(email="bench-gateway@example.com")
    organization = personal_organization_for(user=user)
    set_balance(organization, BALANCE_MICROS)
    _, raw_key = api_key_create(organization=organization, created_by=user, name="bench")
    return organization, raw_key


def billing_truth(
    organization: Organization, served: dict[str, int], *, since: LedgerState
) -> dict[str, object]:
    """Whether what Plugsky billed is what the mocks served it, to the token, with the ledger
    consistent and `billing_reconcile` passing; the figures either way."""
    problems = []
    try:
        assert_ledger_consistent(wait_until_settled(organization), since=since)
    except AssertionError as error:
        problems.append(f"ledger: {error}")
    records = UsageRecord.objects.filter(organization=organization)
    billed = records.aggregate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    truth = {
        "usage_records": records.count(),
        "usage_records_not_200": records.exclude(status=200).count(),
        "billed_prompt_tokens": billed["prompt"] or 0,
        "billed_completion_tokens": billed["completion"] or 0,
        "served_calls": served["calls"],
        "served_prompt_tokens": served["prompt_tokens"],
        "served_completion_tokens": served["completion_tokens"],
    }
    if truth["usage_records"] != served["calls"] or truth["usage_records_not_200"]:
        problems.append("usage records do not match the calls served")
    if (truth["billed_prompt_tokens"], truth["billed_completion_tokens"]) != (
        served["prompt_tokens"], served["completion_tokens"]
    ):  # fmt: skip
        problems.append("billed tokens differ from the tokens served")
    try:
        call_command("billing_reconcile")  # raises CommandError on any drift
    except CommandError as error:
        problems.append(f"billing_reconcile: {error}")
    return truth | {"passed": not problems, "problems": problems}
