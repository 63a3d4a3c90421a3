"""Celery tasks for billing: thin wrappers around services and selectors, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.billing.holds import holds_release_stale
from apps.billing.notices import low_balance_notices_send
from apps.billing.selectors import ledger_drifts

logger = logging.getLogger(__name__)


@shared_task
def billing_holds_release_stale() -> int:
    return holds_release_stale()


@shared_task
def billing_low_balance_notify() -> int:
    return low_balance_notices_send()


@shared_task
def billing_reconcile() -> int:
    """Report every organization whose cached balance or holds drifted from their records."""
    drifts = ledger_drifts()
    for drift in drifts:
        logger.error("billing drift: %s", drift)
    return len(drifts)
