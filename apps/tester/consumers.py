"""The tester's WebSocket: `ws/tester/<organization_id>/`, for signed-in members only.

The page sends `{"type": "run", "columns": [<chat request>, …]}` (up to three models side by side)
and `{"type": "stop"}`. Each column runs as a Celery job (apps/tester/tasks.py) that streams
`{"type": "event", "run_id", "column", "event": "start"|"token"|"tool_call"|"done"|"error", …}`
back to this consumer's channel over the Redis channel layer.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.accounts.models import Membership
from apps.accounts.throttle import Throttle
from apps.tester.services import Column, InvalidTesterRequest, run_cancel, tester_request_validate
from apps.tester.tasks import QUEUE_EXPIRY_S, tester_column_run

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# Tester calls carry no API key, so the per-key request limit does not apply: this one does.
_RUNS_PER_MINUTE = Throttle("tester-runs", limit=30, window_s=60)


def _enqueue(columns: list[Column]) -> None:
    for column in columns:
        tester_column_run.apply_async(args=(column.as_payload(),), expires=QUEUE_EXPIRY_S)


class TesterConsumer(AsyncJsonWebsocketConsumer):
    organization_id: int
    user_id: int
    run_id: str | None = None
    is_admitted = False  # signed in and a member: only then are messages read

    async def connect(self) -> None:
        # A refusal is an accepted socket closed at once with its reason: a handshake refused
        # outright reaches the browser as a bare 1006, and the page could not tell why.
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user.pk
        self.organization_id = int(self.scope["url_route"]["kwargs"]["organization_id"])
        if not await self._is_member():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.is_admitted = True

    @database_sync_to_async
    def _is_member(self) -> bool:
        return Membership.objects.filter(
            user_id=self.user_id, organization_id=self.organization_id
        ).exists()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not self.is_admitted:
            return  # a refused socket, closing
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "run":
            await self._run(content.get("columns"))
        elif kind == "stop":
            await self._stop()
        else:
            await self.send_json({"type": "error", "message": "Unknown message."})

    async def _run(self, bodies: Any) -> None:
        limit = settings.TESTER_MAX_COLUMNS
        if not isinstance(bodies, list) or not 1 <= len(bodies) <= limit:
            await self.send_json({"type": "error", "message": f"Pick 1 to {limit} models."})
            return
        try:
            checked = [tester_request_validate(body) for body in bodies]
        except InvalidTesterRequest as failure:
            await self.send_json({"type": "error", "message": str(failure)})
            return
        if not await self._is_member():  # membership may have ended since connecting
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if await sync_to_async(_RUNS_PER_MINUTE.hit)(str(self.user_id)) > _RUNS_PER_MINUTE.limit:
            await self.send_json({"type": "error", "message": "Too many runs: wait a minute."})
            return
        await self._stop()
        self.run_id = uuid.uuid4().hex
        columns = [
            Column(self.run_id, index, self.organization_id, self.user_id, body, self.channel_name)
            for index, body in enumerate(checked)
        ]
        await sync_to_async(_enqueue, thread_sensitive=False)(columns)
        await self.send_json({"type": "accepted", "run_id": self.run_id, "columns": len(columns)})

    async def _stop(self) -> None:
        if self.run_id is None:
            return
        await sync_to_async(run_cancel)(run_id=self.run_id)
        self.run_id = None

    async def disconnect(self, code: int) -> None:
        await self._stop()

    async def tester_event(self, message: dict[str, Any]) -> None:
        if message.get("run_id") == self.run_id:  # late events of a stopped run are dropped
            await self.send_json({**message, "type": "event"})
