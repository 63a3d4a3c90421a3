"""200 concurrent calls against credit for about 50: only 200s and refusals, an exact ledger.

The clients behave like the OpenAI SDKs: a call refused for load (429 rate_limit_exceeded, 503)
is retried after a short pause, so the burst keeps pressing until the credit runs out; a call
refused for credit (429 insufficient_quota, `x-should-retry: false`) is not.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

import httpx

from apps.billing.models import CreditHold
from apps.billing.pricing import cost_header_value
from apps.usage.models import UsageRecord
from tests.faults.helpers import (
    REFUSALS,
    assert_ledger_consistent,
    envelope_problem,
    ledger_state,
    set_balance,
    wait_until_settled,
)

SEED = 20261201
CHAT_CALLS, EMBEDDING_CALLS = 150, 50
ATTEMPTS = 40  # per call, for refusals of load only
CHAT = {
    "model": "plugsky-nano",
    "messages": [{"role": "user", "content": "Name one colour."}],
    "max_tokens": 4,
    "temperature": 0,
}
EMBEDDING = {"model": "plugsky-embed", "input": "a short sentence to embed"}
QUOTA = (429, "insufficient_quota")


@dataclass(frozen=True)
class Answer:
    path: str
    status: int  # 0: the connection broke without a response
    request_id: str
    cost_header: str | None
    body: dict

    @property
    def outcome(self) -> tuple[int, str]:
        """(status, error code), or (status, why the body is not OpenAI's envelope)."""
        if self.status == 200:
            return 200, ""
        problem = envelope_problem(self.body)
        return self.status, problem or self.body["error"]["code"]


async def _attempt(client: httpx.AsyncClient, path: str, body: dict) -> Answer:
    try:
        response = await client.post(path, json=body)
    except httpx.TransportError as failure:
        return Answer(path, 0, "", None, {"transport_error": repr(failure)})
    try:
        parsed = response.json()
    except ValueError:
        parsed = {"not_json": response.text[:300]}
    return Answer(
        path=path,
        status=response.status_code,
        request_id=response.headers.get("x-request-id", ""),
        cost_header=response.headers.get("x-plugsky-cost"),
        body=parsed,
    )


async def _call(
    client: httpx.AsyncClient, path: str, body: dict, rng: random.Random
) -> list[Answer]:
    """Every answer one call got, retrying only what was refused for load."""
    answers = []
    for _ in range(ATTEMPTS):
        answer = await _attempt(client, path, body)
        answers.append(answer)
        if answer.outcome not in REFUSALS or answer.outcome == QUOTA:
            break
        await asyncio.sleep(rng.uniform(0.05, 0.3))
    return answers


async def _burst(base_url: str, key: str, plan: list[tuple[str, dict]]) -> list[list[Answer]]:
    # A fresh connection per attempt: a broken one is then the server's doing, not a keep-alive
    # connection closed while idle (a race every HTTP client has, and SDKs retry).
    limits = httpx.Limits(max_connections=len(plan), max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=f"{base_url}/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
        limits=limits,
    ) as client:
        return await asyncio.gather(
            *(
                _call(client, path, body, random.Random(SEED + index))
                for index, (path, body) in enumerate(plan)
            )
        )


def _hold_and_cost(base_url: str, key: str, path: str, body: dict) -> tuple[int, int]:
    """One call's worst-case hold and its charged cost, read back from the database."""
    response = httpx.post(
        f"{base_url}/v1{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    hold = CreditHold.objects.get(request_id=request_id).amount_micros
    return hold, UsageRecord.objects.get(request_id=request_id).cost_micros


def test_concurrent_calls_beyond_the_balance_never_overdraw(faults_server_url, tenant):
    organization, key = tenant
    # Warm both models up: what one call holds and costs makes the balance exact.
    chat_hold, chat_cost = _hold_and_cost(faults_server_url, key, "/chat/completions", CHAT)
    embedding_hold, embedding_cost = _hold_and_cost(
        faults_server_url, key, "/embeddings", EMBEDDING
    )
    assert chat_hold >= max(chat_cost, embedding_hold, embedding_cost)
    assert min(chat_cost, embedding_cost) > 0
    initial = 50 * chat_cost  # pays for 50 chat calls; holds are worst cases, so fewer at once
    set_balance(organization, initial)
    before = ledger_state(organization)
    plan = [("/chat/completions", CHAT)] * CHAT_CALLS + [("/embeddings", EMBEDDING)] * (
        EMBEDDING_CALLS
    )
    random.Random(SEED).shuffle(plan)

    calls = asyncio.run(_burst(faults_server_url, key, plan))

    answers = [answer for attempts in calls for answer in attempts]
    succeeded = [answer for answer in answers if answer.status == 200]
    outcomes = Counter(answer.outcome for answer in answers if answer.status != 200)
    final = Counter(attempts[-1].outcome for attempts in calls)
    state = wait_until_settled(organization)
    print(  # shown with a failure, or with -s
        f"\n{len(succeeded)} succeeded; refusals {dict(outcomes)}; last answers {dict(final)}; "
        f"credit {initial} µ$ (chat {chat_hold} µ$ held, {chat_cost} µ$ charged; embedding "
        f"{embedding_hold} µ$ held, {embedding_cost} µ$ charged); "
        f"{state.usage_cost_micros - before.usage_cost_micros} µ$ charged"
    )

    assert_ledger_consistent(state, since=before)
    # Every success was recorded once, at the cost it announced; refusals left no record.
    records = {r.request_id: r for r in UsageRecord.objects.filter(organization=organization)}
    assert len(records) == len(succeeded) + 2  # and the two warm-up calls
    for answer in succeeded:
        assert records[answer.request_id].status == 200
        assert answer.cost_header == cost_header_value(records[answer.request_id].cost_micros)

    unexpected = {outcome: n for outcome, n in outcomes.items() if outcome not in REFUSALS}
    examples = [next(a for a in answers if a.outcome == outcome) for outcome in unexpected]
    assert not unexpected, (unexpected, examples)
    assert final[QUOTA] > 0, "the credit never ran out"
    # No more succeeded than the credit paid for; and when a call was refused for credit, the
    # calls settled and in flight held more than initial - chat_hold, each at most chat_hold.
    assert initial // chat_hold <= len(succeeded) <= initial // min(chat_cost, embedding_cost)
