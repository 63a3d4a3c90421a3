"""The tester's WebSocket through the real ASGI stack: session auth, membership, validation."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache

from apps.tester import consumers
from plugsky_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "plugsky-nano", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


@pytest.fixture
def enqueued(monkeypatch) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Columns handed to Celery (recorded instead of sent)."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        consumers.tester_column_run, "apply_async", lambda args, **options: sent.append(args[0])
    )
    return sent


async def _session_cookie(user) -> bytes:  # type: ignore[no-untyped-def]
    from django.test import Client

    client = Client()
    await sync_to_async(client.force_login)(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def _connect(organization_id: int, user=None) -> tuple[WebsocketCommunicator, bool, Any]:  # type: ignore[no-untyped-def]
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if user is not None:
        headers.append((b"cookie", await _session_cookie(user)))
    communicator = WebsocketCommunicator(
        application, f"/ws/tester/{organization_id}/", headers=headers
    )
    connected, code = await communicator.connect()
    return communicator, connected, code


async def _closed_with(communicator: WebsocketCommunicator) -> int:
    """The close code of a socket the server accepted and then closed (refusals say why)."""
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    return int(message["code"])


async def test_anonymous_visitors_are_refused_with_a_reason(organization):
    communicator, connected, _ = await _connect(organization.pk)
    assert connected
    assert await _closed_with(communicator) == consumers.CLOSE_UNAUTHENTICATED
    await communicator.disconnect()


async def test_outsiders_are_refused_with_a_reason(organization, outsider, enqueued):
    communicator, connected, _ = await _connect(organization.pk, outsider)
    assert connected
    assert await _closed_with(communicator) == consumers.CLOSE_FORBIDDEN
    assert enqueued == []
    await communicator.disconnect()


async def test_a_member_runs_up_to_three_columns(organization, member, enqueued):
    communicator, connected, _ = await _connect(organization.pk, member)
    assert connected
    await communicator.send_json_to(
        {"type": "run", "columns": [BODY, {**BODY, "model": "plugsky-mini"}]}
    )
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["type"] == "accepted" and reply["columns"] == 2
    assert [column["index"] for column in enqueued] == [0, 1]
    assert {column["organization_id"] for column in enqueued} == {organization.pk}
    assert {column["user_id"] for column in enqueued} == {member.pk}
    assert enqueued[0]["body"]["stream"] is True
    assert enqueued[0]["body"]["stream_options"] == {"include_usage": True}

    # The jobs answer on this consumer's own channel; events of another run are dropped.
    layer = get_channel_layer()
    channel = enqueued[0]["reply_channel"]
    stale = {"type": "tester.event", "run_id": "old", "column": 0, "event": "token", "text": "x"}
    await layer.send(channel, stale)
    event = {"type": "tester.event", "run_id": reply["run_id"], "column": 0, "event": "token"}
    await layer.send(channel, {**event, "text": "Hel"})
    assert await communicator.receive_json_from(timeout=5) == {
        **event,
        "type": "event",
        "text": "Hel",
    }

    await communicator.send_json_to({"type": "stop"})
    await communicator.receive_nothing(timeout=0.3)
    assert await sync_to_async(cache.get)(f"tester:cancelled:{reply['run_id']}") == 1
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([BODY] * 4, "Pick 1 to 3 models."),
        ([], "Pick 1 to 3 models."),
        ([{**BODY, "temperature": 5}], "Invalid 'temperature'"),
        ([{**BODY, "messages": []}], "Invalid 'messages'"),
        ([{**BODY, "max_tokens": 100_000}], "at most"),
    ],
)
async def test_invalid_runs_are_refused_before_any_job(
    organization, owner, enqueued, columns, message
):
    communicator, connected, _ = await _connect(organization.pk, owner)
    assert connected
    await communicator.send_json_to({"type": "run", "columns": columns})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["type"] == "error"
    assert message in reply["message"]
    assert enqueued == []
    await communicator.disconnect()


async def test_runs_per_user_are_limited(organization, owner, enqueued, monkeypatch):
    from apps.accounts.throttle import Throttle

    monkeypatch.setattr(consumers, "_RUNS_PER_MINUTE", Throttle("tester-runs", 1, 60))
    communicator, connected, _ = await _connect(organization.pk, owner)
    assert connected
    await communicator.send_json_to({"type": "run", "columns": [BODY]})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "accepted"
    await communicator.send_json_to({"type": "run", "columns": [BODY]})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply == {"type": "error", "message": "Too many runs: wait a minute."}
    assert len(enqueued) == 1
    await communicator.disconnect()
