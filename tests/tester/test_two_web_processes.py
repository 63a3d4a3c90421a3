"""The tester across web processes (issue 10, point 4): two Daphnes and one Celery worker on one
Redis channel layer, as `make run` starts them with WEB_CONCURRENCY=2.

Each page's socket lives in one Daphne; its run is done by the worker, which sends the events to
the socket's own channel through Redis. Both processes listen on the same layer at once, so each
must receive exactly its own page's events, never the other's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from websockets.sync.client import connect

from tests.faults.helpers import set_balance
from tests.live import run_server
from tests.worker import run_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("live")]

BODY = {"model": "plugsky-nano", "messages": [{"role": "user", "content": "Say hi."}]}


@pytest.fixture
def two_daphnes() -> Iterator[tuple[str, str]]:
    worker = run_worker(name="two-daphnes")
    next(worker)
    first, second = run_server(), run_server()
    try:
        yield next(first), next(second)
    finally:
        first.close()
        second.close()
        worker.close()


def _session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def _run_on(url: str, organization_id: int, cookie: str, max_tokens: int) -> list[dict[str, Any]]:
    """One tester run through the socket of the Daphne at `url`: every message until `done`."""
    ws_url = url.replace("http://", "ws://") + f"/ws/tester/{organization_id}/"
    messages: list[dict[str, Any]] = []
    with connect(ws_url, additional_headers={"Cookie": cookie, "Origin": url}) as socket:
        body = {**BODY, "max_tokens": max_tokens, "temperature": 0}
        socket.send(json.dumps({"type": "run", "columns": [body]}))
        while True:
            message = json.loads(socket.recv(timeout=60))
            messages.append(message)
            if message["type"] == "error" or message.get("event") in ("done", "error"):
                return messages


def test_each_daphne_gets_its_own_pages_events(two_daphnes, organization, owner):
    set_balance(organization, 5_000_000)
    cookie = _session_cookie(owner)
    results: dict[str, list[dict[str, Any]]] = {}

    def run(url: str, max_tokens: int) -> None:
        results[url] = _run_on(url, organization.pk, cookie, max_tokens)

    # At the same time, with different lengths, so that mixed-up events would show.
    runs = [
        threading.Thread(target=run, args=(url, tokens))
        for url, tokens in zip(two_daphnes, (3, 9), strict=True)
    ]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=120)

    for url, tokens in zip(two_daphnes, (3, 9), strict=True):
        messages = results[url]
        accepted, *events = messages
        assert accepted["type"] == "accepted", messages
        assert {event["run_id"] for event in events} == {accepted["run_id"]}
        done = events[-1]
        assert done["event"] == "done", messages
        assert done["completion_tokens"] <= tokens
        generated = [event for event in events if event["event"] == "token"]
        assert 1 <= len(generated) <= tokens
    first_run, second_run = (results[url][0]["run_id"] for url in two_daphnes)
    assert first_run != second_run
