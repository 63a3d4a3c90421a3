"""PostgreSQL, then Redis, stop and come back under load: 503s meanwhile, then exact money.

The live server here runs on a PostgreSQL and a Redis of this test's own
(tests/faults/dedicated.py), never on the machine's shared ones. While a store is down every
answer comes back within a bound, in OpenAI's envelope, and never as a 500; billed calls need the
database, so they get 503s. After each restart the server serves again without being restarted
itself, and the ledger shows each call the client saw succeed charged exactly once, and nothing
else.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from apps.billing.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from apps.billing.pricing import cost_header_value
from apps.usage.models import UsageRecord
from plugsky_site.embedded import REPO_ROOT
from tests.faults.dedicated import DedicatedPostgres, DedicatedRedis, dedicated_root, manage
from tests.faults.helpers import (
    REFUSALS,
    LedgerState,
    assert_ledger_consistent,
    envelope_problem,
)
from tests.live import run_server

SEED = 503
CALLS_PER_S = 3  # well within what 2 busy cores serve, so only the outages slow calls
# How long a call waits for a pooled PostgreSQL or Redis connection (then: 503). Shorter than the
# 5 s default so that the outages, which must outlast it, keep the test short.
POOL_TIMEOUT_S = 2
POOL_TIMEOUTS = {
    "DATABASE_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
    "REDIS_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
    "REDIS_SOCKET_TIMEOUT_S": str(POOL_TIMEOUT_S),
}
# No call may take longer, outage or not: a call waits for a pool a few times at most (and
# the machine may be busy with the rest of the suite).
ANSWER_BOUND_S = 15
OUTAGE_S = 3 * POOL_TIMEOUT_S  # so that calls are sent, and refused, during the outage
RECOVERY_BOUND_S = 30
INITIAL_BALANCE_MICROS = 1_000_000
REQUESTS = {
    "chat": ("POST", "/v1/chat/completions", {
        "model": "plugsky-nano",
        "messages": [{"role": "user", "content": "Say yes."}],
        "max_tokens": 3,
        "temperature": 0,
    }),
    "embedding": ("POST", "/v1/embeddings", {"model": "plugsky-embed", "input": "restart"}),
    "models": ("GET", "/v1/models", None),
}  # fmt: skip
BILLED = {"chat", "embedding"}

_SETUP = """
from apps.accounts.selectors import personal_organization_for
from apps.onboarding.services import user_create
from apps.billing.models import CreditAccount
from apps.billing.ledger import credit_adjust
from apps.keys.services import api_key_create
user = user_create(email="restarts@example.com")
organization = personal_organization_for(user=user)
_, key = api_key_create(organization=organization, created_by=user, name="restarts")
account = CreditAccount.objects.filter(organization=organization).first()
current = account.balance_micros if account else 0
credit_adjust(organization=organization, amount_micros={balance} - current, description="restarts")
print(organization.pk, key)
"""


@dataclass(frozen=True)
class Sample:
    kind: str
    sent_at: float
    done_at: float
    status: int  # 0: no answer (timeout or broken connection)
    code: str  # the error code, or what went wrong
    is_envelope: bool  # a 200, or an error in OpenAI's envelope
    request_id: str
    cost_header: str | None

    @property
    def took_s(self) -> float:
        return self.done_at - self.sent_at


@dataclass
class Load:
    """Open-loop load: a new call every tick, however long earlier ones take (as many clients
    would), so that calls keep arriving while others wait on a store that is down."""

    base_url: str
    key: str
    samples: list[Sample]
    is_running: bool = True

    async def run(self, rng: random.Random) -> None:
        timeout = httpx.Timeout(ANSWER_BOUND_S + 5)
        headers = {"Authorization": f"Bearer {self.key}"}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
        calls: list[asyncio.Task[None]] = []
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, limits=limits
        ) as client:
            while self.is_running:
                kind = rng.choices(list(REQUESTS), weights=[1, 1, 2])[0]
                calls.append(asyncio.create_task(self._record(client, kind, headers)))
                await asyncio.sleep(1 / CALLS_PER_S)
            await asyncio.gather(*calls)

    async def _record(self, client: httpx.AsyncClient, kind: str, headers: dict[str, str]) -> None:
        self.samples.append(await _send(client, kind, headers))

    def served_since(self, moment: float) -> bool:
        return any(
            s.kind == "chat" and s.status == 200 and s.sent_at > moment for s in self.samples
        )


async def _send(client: httpx.AsyncClient, kind: str, headers: dict[str, str]) -> Sample:
    method, path, body = REQUESTS[kind]
    sent_at = time.monotonic()
    try:
        response = await client.request(method, path, json=body, headers=headers)
    except httpx.TransportError as failure:
        return Sample(kind, sent_at, time.monotonic(), 0, repr(failure), False, "", None)
    code, problem = "", None
    if response.status_code != 200:
        try:
            parsed = response.json()
        except ValueError:
            parsed = response.text[:200]
        problem = envelope_problem(parsed)
        code = problem or parsed["error"]["code"] or ""
    return Sample(
        kind,
        sent_at,
        time.monotonic(),
        response.status_code,
        code,
        problem is None,
        response.headers.get("x-request-id", ""),
        response.headers.get("x-plugsky-cost"),
    )


@dataclass
class Timeline:
    pg_down: float = 0.0
    pg_up: float = 0.0
    pg_served: float = 0.0
    redis_down: float = 0.0
    redis_up: float = 0.0
    redis_served: float = 0.0


async def _wait_served(load: Load, since: float, what: str) -> float:
    deadline = since + RECOVERY_BOUND_S
    while not load.served_since(since):
        if time.monotonic() > deadline:
            raise AssertionError(f"no chat call succeeded {RECOVERY_BOUND_S} s after {what}")
        await asyncio.sleep(0.1)
    return time.monotonic()


async def _scenario(load: Load, pg: DedicatedPostgres, redis: DedicatedRedis) -> Timeline:
    timeline = Timeline()
    running = asyncio.create_task(load.run(random.Random(SEED)))
    try:
        await _wait_served(load, time.monotonic(), "the start")
        await asyncio.sleep(1)
        await asyncio.to_thread(pg.stop)
        timeline.pg_down = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        timeline.pg_up = time.monotonic()
        await asyncio.to_thread(pg.start)
        timeline.pg_served = await _wait_served(load, timeline.pg_up, "PostgreSQL came back")
        await asyncio.sleep(1)
        await asyncio.to_thread(redis.stop)
        timeline.redis_down = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        timeline.redis_up = time.monotonic()
        await asyncio.to_thread(redis.start)
        timeline.redis_served = await _wait_served(load, timeline.redis_up, "Redis came back")
        await asyncio.sleep(1)
    finally:
        load.is_running = False
        await running
    return timeline


def _warm_up(base_url: str, key: str) -> dict[str, str]:
    """Load both models before the clock starts (the first call of each waits for its weights);
    returns the billed calls' request ids and their announced costs."""
    costs = {}
    for kind, (method, path, body) in REQUESTS.items():
        response = httpx.request(
            method, f"{base_url}{path}", json=body, headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        if kind in BILLED:
            costs[response.headers["x-request-id"]] = response.headers["x-plugsky-cost"]
    return costs


@pytest.fixture
def stores() -> Iterator[tuple[DedicatedPostgres, DedicatedRedis]]:
    root = dedicated_root()
    pg, redis = DedicatedPostgres(root), DedicatedRedis(root)
    try:
        pg.create()
        redis.start()
        yield pg, redis
    finally:
        redis.stop()
        pg.destroy()
        # PostgreSQL's log goes with the server logs, for a failure to be read after the run.
        shutil.copy(root / "log", REPO_ROOT / "tests" / "artifacts" / "faults-postgres.log")
        shutil.rmtree(root, ignore_errors=True)


def _ledger(pg: DedicatedPostgres, organization_id: int) -> tuple[LedgerState, dict]:
    """The organization's ledger state and its usage records, read straight from SQL."""
    with psycopg.connect(pg.url.replace("postgres://", "postgresql://")) as conn:

        def one(sql: str, *args: object) -> int:
            row = conn.execute(sql, (organization_id, *args)).fetchone()
            return int(row[0] or 0) if row else 0

        account, ledger = CreditAccount._meta.db_table, LedgerEntry._meta.db_table
        holds, usage = CreditHold._meta.db_table, UsageRecord._meta.db_table
        records = {
            request_id: (status, cost)
            for request_id, status, cost in conn.execute(
                f"SELECT request_id, status, cost_micros FROM {usage} WHERE organization_id = %s",
                (organization_id,),
            )
        }
        state = LedgerState(
            balance_micros=one(f"SELECT balance_micros FROM {account} WHERE organization_id = %s"),
            held_micros=one(f"SELECT held_micros FROM {account} WHERE organization_id = %s"),
            ledger_sum_micros=one(
                f"SELECT SUM(amount_micros) FROM {ledger} WHERE organization_id = %s"
            ),
            active_holds=one(
                f"SELECT COUNT(*) FROM {holds} WHERE organization_id = %s AND status = %s",
                HoldStatus.ACTIVE.value,
            ),
            usage_cost_micros=one(
                f"SELECT SUM(cost_micros) FROM {usage} WHERE organization_id = %s"
            ),
            usage_debits_micros=-one(
                f"SELECT SUM(amount_micros) FROM {ledger} WHERE organization_id = %s AND kind = %s",
                EntryKind.USAGE.value,
            ),
            usage_records=len(records),
        )
    return state, records


def _settled(pg: DedicatedPostgres, organization_id: int) -> tuple[LedgerState, dict]:
    deadline = time.monotonic() + RECOVERY_BOUND_S
    while True:
        state, records = _ledger(pg, organization_id)
        if state.active_holds == 0 or time.monotonic() > deadline:
            return state, records
        time.sleep(0.2)


def _within(samples: list[Sample], start: float, end: float) -> list[Sample]:
    """Calls sent after `start` (plus a moment for the stop to take hold) and answered before
    `end`: while the store was down from start to finish."""
    return [s for s in samples if start + 0.2 < s.sent_at and s.done_at < end]


def _slowest(samples: list[Sample], timeline: Timeline) -> list[tuple[str, int, float, float]]:
    ranked = sorted(samples, key=lambda s: -s.took_s)[:6]
    return [
        (s.kind, s.status, round(s.sent_at - timeline.pg_down, 1), round(s.took_s, 1))
        for s in ranked
    ]


def _summary(samples: list[Sample]) -> str:
    counts = Counter((s.kind, s.status, s.code) for s in samples)
    slowest = max((s.took_s for s in samples), default=0)
    return f"{dict(counts)}, slowest {slowest:.1f} s"


def test_postgres_and_redis_restarts_under_load(stores):
    pg, redis = stores
    env = {"DATABASE_URL": pg.url, "REDIS_URL": redis.url}
    manage(env, "migrate", "--no-input", "-v", "0")
    output = manage(env, "shell", "-c", _SETUP.format(balance=INITIAL_BALANCE_MICROS))
    organization_id, key = output.strip().splitlines()[-1].split()
    server_env = {
        **env,
        **POOL_TIMEOUTS,
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
        "PLUGSKY_LOCAL_MODELS": "plugsky-nano,plugsky-embed",
    }
    load = Load(base_url="", key=key, samples=[])
    with contextlib.contextmanager(run_server)(extra_env=server_env) as base_url:
        load.base_url = base_url
        warm_up_costs = _warm_up(base_url, key)
        timeline = asyncio.run(_scenario(load, pg, redis))
        state, records = _settled(pg, int(organization_id))

    samples = load.samples
    pg_outage = _within(samples, timeline.pg_down, timeline.pg_up)
    redis_outage = _within(samples, timeline.redis_down, timeline.redis_up)
    print(
        f"\n{len(samples)} calls: {_summary(samples)}\n"
        f"PostgreSQL outage: {_summary(pg_outage)}; "
        f"served again {timeline.pg_served - timeline.pg_up:.1f} s after its start\n"
        f"Redis outage: {_summary(redis_outage)}; "
        f"served again {timeline.redis_served - timeline.redis_up:.1f} s after its start\n"
        f"ledger {state}\n"
        "slowest (kind, status, sent s after the PostgreSQL stop, took s): "
        f"{_slowest(samples, timeline)}"
    )

    # The money first: every success the client saw charged once, at its announced cost.
    successes = {
        s.request_id: s.cost_header for s in samples if s.kind in BILLED and s.status == 200
    }
    successes.update(warm_up_costs)
    charged = {rid: cost for rid, (status, cost) in records.items() if cost > 0 or status == 200}
    assert set(successes) <= set(charged), set(successes) - set(charged)
    # Beyond those, only calls the client gave up on (no answer, so no request id) may be billed.
    unanswered = sum(s.status == 0 and s.kind in BILLED for s in samples)
    answered = {s.request_id: s for s in samples if s.request_id}
    extra = {
        rid: (records[rid], answered.get(rid, "no answer")) for rid in set(charged) - set(successes)
    }
    billed_errors = {rid: v for rid, v in extra.items() if rid in answered}
    assert not billed_errors, f"charged, yet the client saw an error: {billed_errors}"
    assert len(extra) <= unanswered, extra
    for request_id, cost_header in successes.items():
        assert cost_header == cost_header_value(charged[request_id]), request_id
    before = LedgerState(INITIAL_BALANCE_MICROS, 0, INITIAL_BALANCE_MICROS, 0, 0, 0, 0)
    assert_ledger_consistent(state, since=before)

    # Answers: bounded in time, in the envelope, never a 500; billed calls need the database.
    assert all(s.status != 0 for s in samples), [s for s in samples if s.status == 0][:3]
    assert max(s.took_s for s in samples) <= ANSWER_BOUND_S
    bad = Counter(
        (s.kind, s.status, s.code)
        for s in samples
        if not s.is_envelope or not (s.status in (200, 503) or (s.status, s.code) in REFUSALS)
    )
    assert not bad, bad
    assert pg_outage and redis_outage
    assert {(s.status) for s in pg_outage if s.kind in BILLED} == {503}
