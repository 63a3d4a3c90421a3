"""Gateway calls routed upstream, configured as an operator would: an operator catalog file
(PLUGSKY_CATALOG_FILE) or the vendors' own environment variables, pointing at loopback fakes
or at a real llama.cpp server. Calls go in-process through Django's async test client (the full
middleware stack); the ledger is read back from the database after each call."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.catalog import selectors
from apps.catalog.entries import CatalogEntry
from apps.catalog.upstream_models import UPSTREAM_MODELS, VENDOR_DEFAULTS
from apps.usage.models import UsageRecord
from plugsky_site.db import db_call
from tests.fakes.server import serve
from tests.sse import parse_events

# Every variable that could configure an upstream: none may leak in from the machine.
VENDOR_ENV_NAMES = {
    route.api_key_env for entry in UPSTREAM_MODELS for route in entry.upstream_routes
} | {vendor.base_url_env for vendor in VENDOR_DEFAULTS.values()}
FAKE_KEY_ENV = "PLUGSKY_TEST_UPSTREAM_KEY"  # the variable an operator route names for its key
FAKE_KEY = "sk-test"  # what FakeOpenAI(api_key="sk-test") accepts
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(autouse=True)
def vendor_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No vendor variable from the machine; the catalog reloaded around each test."""
    for name in VENDOR_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(FAKE_KEY_ENV, FAKE_KEY)
    selectors.clear_cache()
    yield monkeypatch
    selectors.clear_cache()


@pytest.fixture
def servers() -> Iterator[ExitStack]:
    """Loopback servers started in a test (`servers.enter_context(serve(app))`), stopped after."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def operator_catalog(tmp_path: Path, settings: Any) -> Any:
    """`operator_catalog(models)`: write them as the operator file and load it."""

    def install(models: list[dict[str, Any]]) -> Path:
        path = tmp_path / "catalog.json"
        path.write_text(json.dumps({"models": models}))
        settings.PLUGSKY_CATALOG_FILE = str(path)
        selectors.clear_cache()
        return path

    return install


def served(servers: ExitStack, app: Any) -> str:
    return str(servers.enter_context(serve(app)))


def refused_url() -> str:
    """A loopback URL where nothing listens: the connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- The operator file ------------------------------------------------------------------------


def route(
    base_url: str,
    *,
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    prices: tuple[int, int] | None = None,
    api_key_env: str | None = FAKE_KEY_ENV,
) -> dict[str, Any]:
    """One route of the operator file; `prices` (input, output) are the route's own."""
    spec: dict[str, Any] = {"provider": provider, "model": model, "base_url": base_url}
    if api_key_env is not None:
        spec["api_key_env"] = api_key_env
    if prices is not None:
        spec["input_price_micros_per_mtok"], spec["output_price_micros_per_mtok"] = prices
    return spec


def upstream_model(
    model_id: str,
    routes: list[dict[str, Any]],
    *,
    prices: tuple[int, int] = (150_000, 600_000),
    kind: str = "chat",
    capabilities: list[str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": model_id,
        "kind": kind,
        "context_length": 8192,
        "input_price_micros_per_mtok": prices[0],
        "output_price_micros_per_mtok": prices[1],
        "routes": routes,
    }
    if capabilities is not None:
        spec["capabilities"] = capabilities
    return spec


def catalog_entry(model_id: str) -> CatalogEntry:
    entry = selectors.catalog_model(model_id)
    assert entry is not None, f"{model_id} is not servable"
    return entry


# --- Calls through the gateway ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any  # the JSON document, or for a stream: (events, ended with [DONE])

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]


async def call(
    async_client: Any, raw_key: str, path: str, body: dict[str, Any], *, method: str = "POST"
) -> Answer:
    """One /v1 call, its body read to the end (parsed strictly as SSE when it is a stream)."""
    auth = {"Authorization": f"Bearer {raw_key}"}
    if method == "GET":
        response = await async_client.get(f"/v1{path}", headers=auth)
    else:
        response = await async_client.post(
            f"/v1{path}", data=json.dumps(body), content_type="application/json", headers=auth
        )
    headers = {name.lower(): value for name, value in response.items()}
    if not getattr(response, "streaming", False):
        return Answer(response.status_code, headers, json.loads(response.content))
    raw = b"".join([part async for part in response.streaming_content])
    return Answer(response.status_code, headers, parse_events(raw.decode()))


# --- The ledger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Books:
    balance_micros: int
    held_micros: int
    active_holds: int
    usage_debits: tuple[int, ...]  # the amounts of the organization's usage ledger entries


def _books(organization_id: int) -> Books:
    from apps.billing.models import CreditAccount, CreditHold, HoldStatus, LedgerEntry

    account = CreditAccount.objects.get(organization_id=organization_id)
    debits = LedgerEntry.objects.filter(organization_id=organization_id, kind="usage")
    return Books(
        balance_micros=account.balance_micros,
        held_micros=account.held_micros,
        active_holds=CreditHold.objects.filter(
            organization_id=organization_id, status=HoldStatus.ACTIVE
        ).count(),
        usage_debits=tuple(debits.order_by("pk").values_list("amount_micros", flat=True)),
    )


async def books(organization_id: int) -> Books:
    return await db_call(_books, organization_id)


async def record_of(request_id: str) -> UsageRecord:
    return await db_call(UsageRecord.objects.get, request_id=request_id)


def _held_micros(request_id: str) -> int:
    from apps.billing.models import CreditHold

    return CreditHold.objects.get(request_id=request_id).amount_micros


async def held_for(answer: Answer) -> int:
    """What the call's hold was (kept on its settled row)."""
    return await db_call(_held_micros, answer.request_id)


async def assert_charged(
    organization_id: int, before: Books, answer: Answer, *, cost_micros: int
) -> UsageRecord:
    """The call was debited exactly `cost_micros` (0: not at all), and its hold released."""
    after = await books(organization_id)
    record = await record_of(answer.request_id)
    assert record.cost_micros == cost_micros
    assert before.balance_micros - after.balance_micros == cost_micros
    new_debits = after.usage_debits[len(before.usage_debits) :]
    assert new_debits == ((-cost_micros,) if cost_micros else ())
    assert (after.held_micros, after.active_holds) == (0, 0)
    return record


# --- A recording pass-through in front of a real upstream -------------------------------------


@dataclass
class Tap:
    """An ASGI app forwarding every POST to `upstream` (a base URL ending in /v1)."""

    upstream: str
    bodies: list[Any] = field(default_factory=list)
    usages: list[dict[str, Any]] = field(default_factory=list)  # one per call, as reported
    # The upstream's (model, id) on each call's first chunk: what the UsageRecord keeps.
    names: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = await _tap_read_body(receive)
        self.bodies.append(json.loads(raw))
        headers = {
            name.decode(): value.decode()
            for name, value in scope["headers"]
            if name.decode().lower() in ("authorization", "content-type")
        }
        url = self.upstream + scope["path"].removeprefix("/v1")
        async with (
            httpx.AsyncClient(timeout=120) as client,
            client.stream("POST", url, content=raw, headers=headers) as response,
        ):
            # Only the type: the body is re-framed line by line, so no length or encoding.
            kind = response.headers.get("content-type", "application/json").encode()
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(b"content-type", kind)]})  # fmt: skip
            async for line in response.aiter_lines():
                self._note(line)
                await send({"type": "http.response.body", "body": (line + "\n").encode(),
                            "more_body": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _note(self, line: str) -> None:
        data = line.removeprefix("data: ")
        if not line.startswith("data: ") or data == "[DONE]":
            return
        chunk = json.loads(data)
        if len(self.names) < len(self.bodies):
            self.names.append((chunk["model"], chunk["id"]))
        if chunk.get("usage"):
            self.usages.append(chunk["usage"])


async def _tap_read_body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)
