"""Clients that go away at random points: every hold is released, what ran is billed.

Raw sockets, so that the client really closes (FIN) or resets (RST) the connection at the chosen
moment: half-way through sending the body, before the response, during a non-streamed
generation, or after a few events of a stream. The plan is drawn from a seeded RNG, so a failure
replays with the same seed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from django.utils import timezone

from apps.billing.pricing import call_cost_micros
from apps.catalog.selectors import catalog_model
from apps.usage.models import UsageRecord
from tests.faults.helpers import assert_ledger_consistent, ledger_state, wait_until_settled

SEED = 9_11_2026
CALLS = 32
MAX_TOKENS = 200
LONG_CHAT = {
    "model": "plugsky-nano",
    "messages": [{"role": "user", "content": "Count from 1 to 500, separated by spaces."}],
    "max_tokens": MAX_TOKENS,
    "temperature": 0,
}
EMBEDDING = {"model": "plugsky-embed", "input": ["one sentence", "and another one"]}
# How long each kind of client waits after sending before it closes, in seconds; a
# non-streamed generation is left after a number of tokens' time instead, and a stream after a
# number of events, so that the points stay inside the generation however fast the machine is.
DELAYS_S = {
    "partial_body": (0, 0.05),
    "before_response": (0, 0.03),
    "during_generation": (0, 0),
    "mid_stream": (0, 0),
    "embedding": (0, 0.02),
}
TOKENS_BEFORE_CLOSING = (3, 25)
EVENTS_BEFORE_CLOSING = (1, 10)
LONGEST_WAIT_S = 5  # on a very busy machine: still past the first tokens, yet bounded
SLOTS = 4  # the engine's parallel slots: more calls at once would only queue


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    # The cancels run concurrently; admission control is not what this module tests.
    return {"RATE_LIMIT_CONCURRENT_PER_ORG": "1000", "GATEWAY_MAX_IN_FLIGHT": "1000"}


@dataclass
class Cancel:
    mode: str
    start_s: float  # when the client connects, after the burst starts
    delay_s: float
    tokens: int  # tokens' time to wait before closing (during_generation)
    events: int  # events to read before closing (mid_stream)
    is_reset: bool  # RST instead of FIN
    status_line: bytes = b""
    request_id: str = ""
    events_seen: int = 0


def _plan(rng: random.Random) -> list[Cancel]:
    plan = []
    for _ in range(CALLS):
        mode = rng.choice(sorted(DELAYS_S))
        plan.append(
            Cancel(
                mode=mode,
                start_s=rng.uniform(0, 0.2),
                delay_s=rng.uniform(*DELAYS_S[mode]),
                tokens=rng.randint(*TOKENS_BEFORE_CLOSING),
                events=rng.randint(*EVENTS_BEFORE_CLOSING),
                is_reset=rng.random() < 0.3,
            )
        )
    return plan


def _request(host: str, key: str, path: str, body: dict) -> tuple[bytes, bytes]:
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    return head, payload


@dataclass(frozen=True)
class Pace:
    """How fast this server generates right now: time to the first token, then per token."""

    first_token_s: float
    per_token_s: float


def _measure_pace(base_url: str, key: str) -> Pace:
    started = time.monotonic()
    first = None
    tokens = 0
    with httpx.stream(
        "POST",
        f"{base_url}/v1/chat/completions",
        json={**LONG_CHAT, "max_tokens": 40, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                first = first or time.monotonic()
                tokens += 1
    assert first is not None and tokens > 1
    return Pace(first - started, (time.monotonic() - first) / (tokens - 1))


async def _run(cancel: Cancel, base_url: str, key: str, pace: Pace) -> None:
    parts = urlsplit(base_url)
    await asyncio.sleep(cancel.start_s)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    host = parts.netloc
    try:
        if cancel.mode == "partial_body":
            head, payload = _request(host, key, "/chat/completions", LONG_CHAT)
            writer.write(head + payload[: len(payload) // 2])
            await writer.drain()
            await asyncio.sleep(cancel.delay_s)
        elif cancel.mode == "mid_stream":
            head, payload = _request(host, key, "/chat/completions", {**LONG_CHAT, "stream": True})
            writer.write(head + payload)
            await writer.drain()
            await _read_events(reader, cancel)
        else:
            path, body = (
                ("/embeddings", EMBEDDING)
                if cancel.mode == "embedding"
                else ("/chat/completions", LONG_CHAT)
            )
            head, payload = _request(host, key, path, body)
            writer.write(head + payload)
            await writer.drain()
            if cancel.mode == "during_generation":
                wait_s = pace.first_token_s + cancel.tokens * pace.per_token_s
                cancel.delay_s = min(wait_s, LONGEST_WAIT_S)
            await asyncio.sleep(cancel.delay_s)
    finally:
        if cancel.is_reset:
            writer.transport.abort()
        else:
            writer.close()


async def _read_events(reader: asyncio.StreamReader, cancel: Cancel) -> None:
    cancel.status_line = await asyncio.wait_for(reader.readline(), timeout=60)
    while (line := await asyncio.wait_for(reader.readline(), timeout=60)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "x-request-id":
            cancel.request_id = value.strip()
    while cancel.status_line.startswith(b"HTTP/1.1 200") and cancel.events_seen < cancel.events:
        line = await asyncio.wait_for(reader.readline(), timeout=60)
        if not line:
            return
        cancel.events_seen += line.startswith(b"data: {")


async def _burst(plan: list[Cancel], base_url: str, key: str, pace: Pace) -> None:
    slots = asyncio.Semaphore(SLOTS)

    async def run(cancel: Cancel) -> None:
        async with slots:
            await _run(cancel, base_url, key, pace)

    await asyncio.gather(*(run(cancel) for cancel in plan))


def test_clients_that_go_away_leave_no_hold_and_are_billed_for_what_ran(faults_server_url, tenant):
    organization, key = tenant
    _measure_pace(faults_server_url, key)  # the first call also loads the model
    pace = _measure_pace(faults_server_url, key)
    before = ledger_state(organization)
    burst_started = timezone.now()
    plan = _plan(random.Random(SEED))

    asyncio.run(_burst(plan, faults_server_url, key, pace))

    state = wait_until_settled(organization, timeout_s=30)
    records = list(
        UsageRecord.objects.filter(organization=organization, created_at__gte=burst_started)
    )
    print(
        f"\n{pace}; plan {dict(Counter(c.mode for c in plan))}; records "
        f"{dict(Counter((r.endpoint, r.status, r.is_client_disconnect) for r in records))}"
    )
    assert_ledger_consistent(state, since=before)
    # A body never received in full never reached the view: no record, no hold.
    assert len(records) <= sum(c.mode != "partial_body" for c in plan)
    for record in records:
        entry = catalog_model(record.model)
        expected = call_cost_micros(
            entry=entry,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
        )
        if record.is_client_disconnect:
            # Billed to the token (anything that ran costs something), and generation stopped
            # when the client left.
            assert record.status == 499, record
            assert record.cost_micros == expected, record
            assert (expected > 0) == (record.total_tokens > 0), record
            assert record.completion_tokens < MAX_TOKENS, record
        else:
            assert record.status == 200, record
            assert record.cost_micros == expected > 0, record
    streams = [c for c in plan if c.mode == "mid_stream"]
    assert all(c.status_line.startswith(b"HTTP/1.1 200 ") for c in streams), [
        c.status_line for c in streams
    ]
    by_id = {record.request_id: record for record in records}
    for cancel in streams:
        record = by_id[cancel.request_id]
        assert record.is_client_disconnect and record.completion_tokens > 0, record
        assert record.cost_micros > 0, record
    generations = [
        r
        for r in records
        if r.is_client_disconnect and not r.is_stream and r.endpoint == "chat.completions"
    ]
    assert any(r.completion_tokens > 0 and r.cost_micros > 0 for r in generations), generations

    # Every slot was freed: a normal call still goes through at once.
    response = httpx.post(
        f"{faults_server_url}/v1/chat/completions",
        json={**LONG_CHAT, "max_tokens": 4},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
