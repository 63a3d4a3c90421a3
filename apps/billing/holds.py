"""Holds and settlement: reserve a call's worst case, then charge what it cost, exactly once.

A hold reserves against the balance minus active holds and against the spend limits (see
apps.billing for the lock order); settling writes the UsageRecord, the usage debit and the release
in one transaction.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Case, Exists, F, Q, Value, When
from django.db.models.lookups import GreaterThan, LessThanOrEqual
from django.utils import timezone

from apps.billing.errors import AlreadySettled, InsufficientCredit, SpendLimitExceeded
from apps.billing.models import (
    CreditAccount,
    CreditHold,
    EntryKind,
    HoldStatus,
    LedgerEntry,
    SpendLimit,
)
from apps.billing.selectors import month_start
from apps.billing.statements import hold_without_limits, settle_without_limits
from apps.usage.models import UsageRecord
from apps.usage.services import CallOutcome, usage_record_create, usage_record_fields

logger = logging.getLogger(__name__)


def _spent_in(month: date) -> Case:
    """A limit row's settled spend in `month`: a row last touched in an earlier month spent 0."""
    return Case(
        When(month=month, then=F("spent_micros")),
        default=Value(0),
        output_field=BigIntegerField(),
    )


def _limits_scope(organization_id: int, api_key_id: int | None) -> Q:
    """The spend limits a call counts against: its organization's, and its key's."""
    scope = Q(organization_id=organization_id, api_key__isnull=True)
    if api_key_id is not None:
        scope |= Q(api_key_id=api_key_id)
    return scope


def _limit_exceeded(limit: SpendLimit, month: date) -> SpendLimitExceeded:
    spent = limit.spent_micros if limit.month == month else 0
    return SpendLimitExceeded(
        is_key_limit=limit.api_key_id is not None,
        limit_micros=limit.monthly_limit_micros,
        committed_micros=spent + limit.held_micros,
    )


def _limits_reserve(
    *, organization_id: int, api_key_id: int | None, amount_micros: int, month: date
) -> tuple[int | None, int | None]:
    org_limit_id = key_limit_id = None
    limits = SpendLimit.objects.filter(_limits_scope(organization_id, api_key_id)).values_list(
        "pk", "api_key_id"
    )
    # The organization's limit before the key's: the lock order of _balance_move.
    for limit_id, limit_key_id in sorted(limits, key=lambda row: row[1] is not None):
        committed = _spent_in(month) + F("held_micros") + amount_micros
        is_reserved = (
            SpendLimit.objects.filter(pk=limit_id)
            .filter(LessThanOrEqual(committed, F("monthly_limit_micros")))
            .update(
                month=month,
                spent_micros=_spent_in(month),
                held_micros=F("held_micros") + amount_micros,
            )
        )
        if not is_reserved:
            raise _limit_exceeded(SpendLimit.objects.get(pk=limit_id), month)
        if limit_key_id is None:
            org_limit_id = limit_id
        else:
            key_limit_id = limit_id
    return org_limit_id, key_limit_id


def credit_hold(
    *, organization_id: int, api_key_id: int | None, request_id: str, amount_micros: int
) -> CreditHold:
    """Reserve a call's worst-case cost against balance minus active holds, and against limits."""
    if amount_micros < 0:
        raise ValueError("a hold cannot be negative")
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.BILLING_HOLD_TTL_S)
    hold = hold_without_limits(
        organization_id=organization_id,
        api_key_id=api_key_id,
        request_id=request_id,
        amount_micros=amount_micros,
        now=now,
        expires_at=expires_at,
    )
    if hold is not None:  # the usual case, in one statement (apps.billing.statements)
        return hold
    with transaction.atomic():
        # One conditional UPDATE: concurrent holds queue on the account row and each re-checks
        # the condition against the balance the previous one left.
        is_covered = CreditAccount.objects.filter(
            organization_id=organization_id,
            balance_micros__gte=F("held_micros") + amount_micros,
        ).update(held_micros=F("held_micros") + amount_micros)
        if not is_covered:
            account = CreditAccount.objects.filter(organization_id=organization_id).first()
            available = account.available_micros if account else 0
            raise InsufficientCredit(needed_micros=amount_micros, available_micros=available)
        org_limit_id, key_limit_id = _limits_reserve(
            organization_id=organization_id,
            api_key_id=api_key_id,
            amount_micros=amount_micros,
            month=month_start(now),
        )
        return CreditHold.objects.create(
            request_id=request_id,
            organization_id=organization_id,
            api_key_id=api_key_id,
            amount_micros=amount_micros,
            org_limit_id=org_limit_id,
            key_limit_id=key_limit_id,
            created_at=now,
            expires_at=expires_at,
        )


def credit_precheck(*, organization_id: int, api_key_id: int | None, amount_micros: int) -> None:
    """Raise what credit_hold would for `amount_micros`, with one read and no write.

    Run before a call's expensive preparation, with a part of its worst case known by then: a
    call refused here would have been refused by its hold too. Nothing is reserved.
    """
    month = month_start(timezone.now())
    committed = _spent_in(month) + F("held_micros") + amount_micros
    over_limit = SpendLimit.objects.filter(_limits_scope(organization_id, api_key_id)).filter(
        GreaterThan(committed, F("monthly_limit_micros"))
    )
    state = (
        CreditAccount.objects.filter(organization_id=organization_id)
        .annotate(is_over_limit=Exists(over_limit))
        .values("balance_micros", "held_micros", "is_over_limit")
        .first()
    )
    available = state["balance_micros"] - state["held_micros"] if state else 0
    if available < amount_micros:
        raise InsufficientCredit(needed_micros=amount_micros, available_micros=available)
    if state and state["is_over_limit"]:
        # The organization's limit first, as _limits_reserve checks them.
        limits = over_limit.order_by(F("api_key_id").asc(nulls_first=True))
        raise _limit_exceeded(limits[0], month)


def credit_hold_extend(*, hold: CreditHold, ttl_s: int) -> bool:
    """Keep a running call's hold from expiring for `ttl_s` more; False once it is closed."""
    expires_at = timezone.now() + timedelta(seconds=ttl_s)
    extended = CreditHold.objects.filter(pk=hold.pk, status=HoldStatus.ACTIVE).update(
        expires_at=expires_at
    )
    return extended == 1


def _hold_close(hold: CreditHold, status: HoldStatus) -> bool:
    """Move an active hold to `status`; False if something else closed it first."""
    closed = CreditHold.objects.filter(pk=hold.pk, status=HoldStatus.ACTIVE).update(
        status=status, closed_at=timezone.now()
    )
    return closed == 1


def _balance_move(*, hold: CreditHold, charged_micros: int, released_micros: int) -> None:
    """Debit the charge and release the hold on the account and on the limits it counted against."""
    if charged_micros or released_micros:
        CreditAccount.objects.filter(organization_id=hold.organization_id).update(
            balance_micros=F("balance_micros") - charged_micros,
            held_micros=F("held_micros") - released_micros,
        )
    month = month_start(timezone.now())
    for limit_id in (hold.org_limit_id, hold.key_limit_id):
        if limit_id is not None:
            SpendLimit.objects.filter(pk=limit_id).update(
                month=month,
                spent_micros=_spent_in(month) + charged_micros,
                held_micros=F("held_micros") - released_micros,
            )


def _charge_for(hold: CreditHold, cost_micros: int) -> int:
    if cost_micros < 0:
        raise ValueError("a cost cannot be negative")
    if cost_micros > hold.amount_micros:
        # The hold is the worst case the gateway promised; charging past it could overdraw.
        logger.error(
            "call %s cost %d µ$ above its hold of %d µ$; charged the hold",
            hold.request_id,
            cost_micros,
            hold.amount_micros,
        )
        return hold.amount_micros
    return cost_micros


def credit_settle(*, hold: CreditHold, outcome: CallOutcome, cost_micros: int) -> UsageRecord:
    """Record the call, debit its cost and release its hold in one transaction.

    The charge is clamped to the hold (the worst case). A second settlement of the same request
    raises AlreadySettled and changes nothing. A hold already released as stale is still charged:
    the call was served.
    """
    charged = _charge_for(hold, cost_micros)
    try:
        if hold.org_limit_id is None and hold.key_limit_id is None:
            record = settle_without_limits(
                hold=hold,
                record_values=usage_record_fields(outcome),
                charged_micros=charged,
                now=timezone.now(),
            )
            if record is not None:  # the usual case, in one statement (apps.billing.statements)
                return record
        with transaction.atomic():
            was_active = _hold_close(hold, HoldStatus.SETTLED)
            record = usage_record_create(outcome=outcome, cost_micros=charged)
            if charged:
                LedgerEntry.objects.create(
                    organization_id=hold.organization_id,
                    kind=EntryKind.USAGE,
                    amount_micros=-charged,
                    usage_record=record,
                    created_at=record.created_at,
                )
            released = hold.amount_micros if was_active else 0
            _balance_move(hold=hold, charged_micros=charged, released_micros=released)
    except IntegrityError as error:
        if UsageRecord.objects.filter(request_id=outcome.request_id).exists():
            raise AlreadySettled(outcome.request_id) from error
        raise
    return record


def credit_release(*, hold: CreditHold) -> bool:
    """Release an active hold without charging (its call never settled); False if already closed."""
    with transaction.atomic():
        if not _hold_close(hold, HoldStatus.EXPIRED):
            return False
        _balance_move(hold=hold, charged_micros=0, released_micros=hold.amount_micros)
    return True


def holds_release_stale(*, now: datetime | None = None) -> int:
    """Release the holds whose process died before settling; returns how many were released."""
    stale = CreditHold.objects.filter(
        status=HoldStatus.ACTIVE, expires_at__lt=now or timezone.now()
    ).order_by("expires_at")
    released = 0
    for hold in stale.iterator():
        if credit_release(hold=hold):
            logger.warning("released stale hold %s (%d µ$)", hold.request_id, hold.amount_micros)
            released += 1
    return released
