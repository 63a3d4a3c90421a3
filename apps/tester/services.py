"""The in-browser tester: one model column of one run, served exactly like an API call.

A column's request goes through the gateway's own serving pipeline (`apps.gateway.serving.chat`)
with a CallContext marked `is_tester` and no API key, so it is held, metered, billed to the
organization and recorded in usage exactly as a /v1 call would be. Its stream of chunks is read
here and each token is sent over the Redis channel layer to the page's WebSocket consumer.

Events go with `channel_layer.send` to the consumer's own channel, not with `group_send`: a group
send drops messages silently when the channel is full, a direct send raises ChannelFull, so a
slow page makes the job wait instead of losing tokens (or the final usage), and a page that has
gone away stops the generation like a departing API client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from apps.accounts.models import Membership
from apps.billing.pricing import usd_display
from apps.gateway.endpoint import new_request_id
from apps.gateway.serving import chat
from apps.gateway.serving.common import MAX_USER_LENGTH, CallContext, ChunkStream, Priced
from apps.protocol import errors
from apps.protocol.openai import ChatCompletionRequest, request_validate
from apps.usage.models import UsageRecord

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 512
_CANCEL_CHECK_S = 0.25
# A page that reads nothing for this long is gone: its column stops.
_PAGE_TIMEOUT_S = 15.0


class InvalidTesterRequest(ValueError):
    """A column's request cannot run; the message is safe to show."""


@dataclass(frozen=True)
class Column:
    """What a Celery job needs to run one column (ids and plain data only)."""

    run_id: str
    index: int
    organization_id: int
    user_id: int
    body: dict[str, Any]
    reply_channel: str

    def as_payload(self) -> dict[str, Any]:
        return asdict(self)


def _cancel_key(run_id: str) -> str:
    return f"tester:cancelled:{run_id}"


def run_cancel(*, run_id: str) -> None:
    """Ask the run's columns to stop; they close their streams, billed for what ran."""
    cache.set(_cancel_key(run_id), 1, timeout=600)


def tester_request_validate(body: Any) -> dict[str, Any]:
    """The chat request a column will send, checked as the API would check it, plus tester rules.

    The tester always streams (with usage), draws one choice and caps max_tokens.
    """
    if not isinstance(body, dict):
        raise InvalidTesterRequest("A column's request must be a JSON object.")
    body = {**body, "stream": True, "stream_options": {"include_usage": True}, "n": 1}
    body.pop("max_completion_tokens", None)
    body["max_tokens"] = body.get("max_tokens") or DEFAULT_MAX_TOKENS
    try:
        request = request_validate(body, ChatCompletionRequest)  # the API's own checks and words
    except errors.APIError as failure:
        raise InvalidTesterRequest(failure.message) from None
    limit = settings.TESTER_MAX_OUTPUT_TOKENS
    if request.max_tokens and request.max_tokens > limit:
        raise InvalidTesterRequest(f"The tester allows at most {limit} output tokens.")
    return body


@dataclass
class _Progress:
    """What a column has streamed so far."""

    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    finish_reason: str | None = None
    error: dict[str, Any] | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def first_token_ms(self) -> int | None:
        if self.first_token_at is None:
            return None
        return int((self.first_token_at - self.started) * 1000)


class _Outbox:
    """A column's events to the page, in order.

    `put` never waits, so the task reading the model's stream only ever awaits the stream (a stop
    then cancels it inside the gateway's generator, which settles the call). A pump delivers the
    events; when the page's channel stays full for _PAGE_TIMEOUT_S, the page is taken as gone.
    """

    def __init__(self, column: Column) -> None:
        self.layer = get_channel_layer()
        self.column = column
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.is_gone = self.layer is None
        self._pump_task: asyncio.Task[None] | None = None

    def put(self, event: str, **data: Any) -> None:
        message = {
            "type": "tester.event",
            "run_id": self.column.run_id,
            "column": self.column.index,
            "event": event,
            **data,
        }
        self.queue.put_nowait(message)

    async def __aenter__(self) -> _Outbox:
        self._pump_task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.queue.put_nowait(None)
        assert self._pump_task is not None
        await self._pump_task

    async def _pump(self) -> None:
        while (message := await self.queue.get()) is not None:
            if not self.is_gone:
                await self._deliver(message)

    async def _deliver(self, message: dict[str, Any]) -> None:
        assert self.layer is not None
        deadline = time.monotonic() + _PAGE_TIMEOUT_S
        while True:
            try:
                await self.layer.send(self.column.reply_channel, message)
                return
            except ChannelFull:
                if time.monotonic() > deadline:
                    logger.info("tester run %s: the page stopped reading", self.column.run_id)
                    self.is_gone = True
                    return
                await asyncio.sleep(0.05)


async def _is_member(column: Column) -> bool:
    return await Membership.objects.filter(
        user_id=column.user_id, organization_id=column.organization_id
    ).aexists()


async def _user_email(column: Column) -> str:
    membership = await Membership.objects.select_related("user").aget(
        user_id=column.user_id, organization_id=column.organization_id
    )
    return membership.user.email


async def column_run(column: Column) -> None:
    """Run one column to its end (or its cancellation), streaming events to the page."""
    async with _Outbox(column) as outbox:
        await _column_run(column, outbox)


async def _column_run(column: Column, outbox: _Outbox) -> None:
    if not await _is_member(column):
        outbox.put("error", message="You are no longer a member of this organization.")
        return
    try:
        body = tester_request_validate(column.body)
    except InvalidTesterRequest as failure:
        outbox.put("error", message=str(failure))
        return
    # The signed-in member is the end user. An email (254 characters at most, stored in
    # PostgreSQL, so free of NULs) always passes the `user` rule of every endpoint.
    body["user"] = (await _user_email(column))[:MAX_USER_LENGTH]
    ctx = CallContext(
        request_id=new_request_id(),
        organization_id=column.organization_id,
        api_key_id=None,
        is_tester=True,
    )
    progress = _Progress()
    try:
        stream = await chat.create(ChatCompletionRequest.model_validate(body), ctx)
    except errors.APIError as failure:
        outbox.put("error", message=failure.message, code=failure.code, status=failure.status)
        return
    assert not isinstance(stream, Priced)  # tester_request_validate always asks for a stream
    outbox.put("start", request_id=ctx.request_id, model=body["model"])
    await _relay(stream, column, outbox, progress)
    await _finish(ctx.request_id, outbox, progress)


async def _relay(stream: ChunkStream, column: Column, outbox: _Outbox, progress: _Progress) -> None:
    """Forward the stream's chunks; a stop (or a vanished page) cancels it like a departing client.

    Cancelling the consuming task is exactly what the ASGI server does when a client disconnects
    mid-stream, so the gateway settles the call for the tokens generated until then.
    """
    consumer = asyncio.create_task(_consume(stream, outbox, progress))
    try:
        while not consumer.done():
            await asyncio.wait({consumer}, timeout=_CANCEL_CHECK_S)
            if not consumer.done() and await _is_stopped(column, outbox):
                progress.finish_reason = "cancelled"
                consumer.cancel()
                await asyncio.wait({consumer})
    finally:
        if not consumer.done():
            consumer.cancel()
            await asyncio.wait({consumer})
    if not consumer.cancelled() and consumer.exception() is not None:
        raise consumer.exception()  # type: ignore[misc]


async def _is_stopped(column: Column, outbox: _Outbox) -> bool:
    return outbox.is_gone or bool(await sync_to_async(cache.get)(_cancel_key(column.run_id)))


async def _consume(stream: ChunkStream, outbox: _Outbox, progress: _Progress) -> None:
    try:
        async for chunk in stream:
            _forward(chunk, outbox, progress)
    finally:
        await stream.aclose()  # whatever ended the loop, the call is settled before we go on


def _forward(chunk: dict[str, Any], outbox: _Outbox, progress: _Progress) -> None:
    if "error" in chunk:  # the stream failed after its first chunk: its last chunk says why
        progress.error = chunk["error"]
        outbox.put("error", message=chunk["error"].get("message", "The model failed."))
        return
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            progress.first_token_at = progress.first_token_at or time.monotonic()
            outbox.put("token", text=delta["content"])
        for call in delta.get("tool_calls") or []:
            progress.first_token_at = progress.first_token_at or time.monotonic()
            outbox.put("tool_call", call=_merge_tool_call(progress, call))
        if choice.get("finish_reason"):
            progress.finish_reason = choice["finish_reason"]


def _merge_tool_call(progress: _Progress, delta: dict[str, Any]) -> dict[str, Any]:
    """Accumulate a streamed tool call (OpenAI deltas append to `function.arguments`)."""
    index = int(delta.get("index", 0))
    call = progress.tool_calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = delta.get("function") or {}
    call["id"] = delta.get("id") or call["id"]
    call["name"] = function.get("name") or call["name"]
    call["arguments"] += function.get("arguments") or ""
    return {"index": index, **call}


async def _finish(request_id: str, outbox: _Outbox, progress: _Progress) -> None:
    record = await UsageRecord.objects.filter(request_id=request_id).afirst()
    if record is None:
        logger.error("tester call %s left no usage record", request_id)
        outbox.put("done", request_id=request_id, finish_reason=progress.finish_reason)
        return
    outbox.put(
        "done",
        request_id=request_id,
        finish_reason=progress.finish_reason or "stop",
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cost_micros=record.cost_micros,
        cost=usd_display(record.cost_micros),
        latency_ms=record.latency_ms,
        first_token_ms=progress.first_token_ms(),
    )
