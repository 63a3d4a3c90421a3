"""A column relays the serving stream's chunk dicts as they come, and a stop cancels the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from asgiref.sync import sync_to_async

from apps.tester import services
from apps.tester.services import Column, run_cancel


def _column() -> Column:
    return Column("run1", 0, organization_id=1, user_id=1, body={}, reply_channel="specific.test!1")


def _sent(outbox: services._Outbox) -> list[tuple[str, Any]]:
    """(event, its one datum) of what the column put in its outbox, in order."""
    sent = []
    while not outbox.queue.empty():
        message = outbox.queue.get_nowait()
        assert message is not None
        datum = {k: v for k, v in message.items() if k not in {"type", "run_id", "column", "event"}}
        sent.append((message["event"], datum))
    return sent


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return {"object": "chat.completion.chunk", "choices": [choice]}


async def _stream(*chunks: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
    for chunk in chunks:
        yield chunk


async def test_chunks_are_relayed_as_tokens_tool_calls_and_errors():
    outbox = services._Outbox(_column())
    progress = services._Progress()
    call = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}
    stream = _stream(
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hi"}),
        _chunk({"tool_calls": [call]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        _chunk({}, "tool_calls"),
        {"error": {"message": "the engine failed"}},
    )

    await services._relay(stream, _column(), outbox, progress)

    merged = {"index": 0, "id": "call_1", "name": "f", "arguments": '{"a": 1}'}
    assert _sent(outbox) == [
        ("token", {"text": "Hi"}),
        ("tool_call", {"call": {"index": 0, "id": "call_1", "name": "f", "arguments": '{"a"'}}),
        ("tool_call", {"call": merged}),
        ("error", {"message": "the engine failed"}),
    ]
    assert progress.finish_reason == "tool_calls"
    assert progress.error == {"message": "the engine failed"}
    assert progress.first_token_at is not None


async def test_a_stop_cancels_the_stream_like_a_departing_client():
    seen: list[str] = []

    async def endless() -> AsyncGenerator[dict[str, Any], None]:
        try:
            yield _chunk({"content": "Once"})
            await asyncio.sleep(30)  # the engine generating on
            yield _chunk({"content": "never"})
        except asyncio.CancelledError:
            seen.append("cancelled")  # where the gateway settles the call for what ran
            raise

    outbox = services._Outbox(_column())
    progress = services._Progress()
    await sync_to_async(run_cancel)(run_id="run1")

    await asyncio.wait_for(services._relay(endless(), _column(), outbox, progress), timeout=5)

    assert seen == ["cancelled"]
    assert progress.finish_reason == "cancelled"
    assert _sent(outbox) == [("token", {"text": "Once"})]
