"""Celery jobs of the tester: one per model column of a run."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from celery import shared_task

from apps.tester.services import Column, column_run

# A column is a live conversation with someone watching: it is never retried (a second attempt
# would be billed as a second call) and is dropped when it waited too long to start.
#
# No Celery time limits: the worker runs `--pool threads`, which ignores them. A column is bounded
# by what it runs instead: output capped at TESTER_MAX_OUTPUT_TOKENS, the providers' read
# timeouts, the Stop button, and a page that stops reading (the outbox gives up, which cancels
# the call like a departing client).
QUEUE_EXPIRY_S = 120


@shared_task(acks_late=False, ignore_result=True)
def tester_column_run(payload: dict[str, Any]) -> None:
    async_to_sync(column_run)(Column(**payload))
