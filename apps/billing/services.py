"""Writes for billing: the ledger, holds and settlement, spend limits, top-ups, notices.

Lock order, everywhere: a hold or top-up row first, then the organization's CreditAccount, then its
SpendLimit rows (organization's before key's). Every balance change is a conditional or F()
UPDATE in the same transaction as the ledger entry that explains it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Case, Exists, F, Q, Value, When
from django.db.models.lookups import GreaterThan, LessThanOrEqual
from django.utils import timezone

from apps.accounts.models import Organization, User
from apps.accounts.selectors import membership_for
from apps.billing import stripe_gateway
from apps.billing.errors import (
    AlreadySettled,
    InsufficientCredit,
    InvalidTopUpAmount,
    SpendLimitExceeded,
    TopUpsNotConfigured,
)
from apps.billing.models import (
    CreditAccount,
    CreditHold,
    EntryKind,
    HoldStatus,
    LedgerEntry,
    SpendLimit,
    StripeEvent,
    TopUp,
    TopUpStatus,
)
from apps.billing.pricing import cents_to_micros, usd_display
from apps.billing.selectors import billing_contacts_for, month_start
from apps.keys.models import APIKey
from apps.usage.models import UsageRecord
from apps.usage.selectors import usage_cost_since
from apps.usage.services import CallOutcome, usage_record_create

logger = logging.getLogger(__name__)

# --- Ledger --------------------------------------------------------------------------------------


def _account_ensure(organization_id: int) -> None:
    CreditAccount.objects.bulk_create(
        [CreditAccount(organization_id=organization_id)], ignore_conflicts=True
    )


def ledger_entry_create(
    *,
    organization_id: int,
    kind: EntryKind,
    amount_micros: int,
    external_id: str = "",
    description: str = "",
) -> LedgerEntry | None:
    """Append an entry and move the cached balance with it; None if its idempotency key was used."""
    if kind == EntryKind.USAGE:
        raise ValueError("usage is debited by credit_settle, together with its UsageRecord")
    with transaction.atomic():
        _account_ensure(organization_id)
        try:
            with transaction.atomic():
                entry = LedgerEntry.objects.create(
                    organization_id=organization_id,
                    kind=kind,
                    amount_micros=amount_micros,
                    external_id=external_id,
                    description=description,
                )
        except IntegrityError:
            return None  # one trial per organization, one entry per external id
        CreditAccount.objects.filter(organization_id=organization_id).update(
            balance_micros=F("balance_micros") + amount_micros
        )
    return entry


def trial_grant(*, organization: Organization) -> LedgerEntry | None:
    """Grant the trial credit; a second grant to the same organization changes nothing."""
    return ledger_entry_create(
        organization_id=organization.pk,
        kind=EntryKind.TRIAL_GRANT,
        amount_micros=settings.BILLING_TRIAL_CREDIT_MICROS,
        description="Trial credit",
    )


def credit_adjust(
    *, organization: Organization, amount_micros: int, description: str
) -> LedgerEntry:
    """A manual correction by staff, positive or negative, with the reason."""
    entry = ledger_entry_create(
        organization_id=organization.pk,
        kind=EntryKind.ADJUSTMENT,
        amount_micros=amount_micros,
        description=description,
    )
    assert entry is not None  # no external id, so never a duplicate
    return entry


# --- Holds and settlement ------------------------------------------------------------------------


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
            expires_at=now + timedelta(seconds=settings.BILLING_HOLD_TTL_S),
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


# --- Spend limits --------------------------------------------------------------------------------


def spend_limit_set(
    *, organization: Organization, api_key: APIKey | None = None, monthly_limit_micros: int
) -> SpendLimit:
    """Set or change the monthly spend limit of an organization, or of one of its keys.

    A call is refused when its worst case would take this UTC month's settled spend plus the
    calls in flight past the limit, so the limit is never exceeded. A new limit starts from what
    was already spent this month; calls in flight when it is set do not count against it.
    """
    if monthly_limit_micros < 0:
        raise ValueError("a spend limit cannot be negative")
    if api_key is not None and api_key.organization_id != organization.pk:
        raise PermissionDenied("The API key belongs to another organization.")
    scope = {"organization": organization, "api_key": api_key}
    month = month_start(timezone.now())
    with transaction.atomic():
        # Holds and settlements take the account row first; holding it keeps the sum exact.
        _account_ensure(organization.pk)
        CreditAccount.objects.select_for_update().get(organization=organization)
        if SpendLimit.objects.filter(**scope).update(monthly_limit_micros=monthly_limit_micros):
            return SpendLimit.objects.get(**scope)
        spent = usage_cost_since(
            organization_id=organization.pk,
            api_key_id=api_key.pk if api_key else None,
            since=datetime(month.year, month.month, 1, tzinfo=UTC),
        )
        return SpendLimit.objects.create(
            **scope, monthly_limit_micros=monthly_limit_micros, month=month, spent_micros=spent
        )


def spend_limit_remove(*, organization: Organization, api_key: APIKey | None = None) -> None:
    """Remove the organization's (or the key's) monthly spend limit."""
    SpendLimit.objects.filter(organization=organization, api_key=api_key).delete()


# --- Top-ups through Stripe ----------------------------------------------------------------------


def _topup_reference(topup: TopUp) -> str:
    return f"plugsky-topup-{topup.pk}"


def _topup_id_from(reference: str | None) -> int | None:
    prefix = "plugsky-topup-"
    if reference and reference.startswith(prefix) and reference[len(prefix) :].isdigit():
        return int(reference[len(prefix) :])
    return None


def _topup_amount_check(amount_cents: int) -> None:
    low, high = settings.BILLING_TOPUP_MIN_CENTS, settings.BILLING_TOPUP_MAX_CENTS
    if not low <= amount_cents <= high:
        raise InvalidTopUpAmount(
            f"A top-up must be between {usd_display(cents_to_micros(low))} and "
            f"{usd_display(cents_to_micros(high))}."
        )


def topup_checkout_start(
    *,
    organization: Organization,
    user: User,
    amount_cents: int,
    success_url: str,
    cancel_url: str,
) -> tuple[TopUp, str]:
    """Open a Stripe Checkout payment for credit; returns the top-up and the URL to send the user.

    The top-up row is written before Stripe is called, so a paid session always finds it.
    """
    membership = membership_for(user=user, organization=organization)
    if membership is None or not membership.is_manager:
        raise PermissionDenied("Only owners and admins can add credit.")
    if not stripe_gateway.is_configured():
        raise TopUpsNotConfigured
    _topup_amount_check(amount_cents)
    topup = TopUp.objects.create(
        organization=organization, amount_micros=cents_to_micros(amount_cents), created_by=user
    )
    reference = _topup_reference(topup)
    try:
        session = stripe_gateway.checkout_session_create(
            reference=reference,
            amount_cents=amount_cents,
            customer_email=user.email,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata={"plugsky_organization_id": str(organization.pk), "plugsky_topup": reference},
        )
    except stripe_gateway.CheckoutFailed:
        TopUp.objects.filter(pk=topup.pk).update(status=TopUpStatus.FAILED)
        raise
    TopUp.objects.filter(pk=topup.pk).update(stripe_session_id=session.id)
    topup.stripe_session_id = session.id
    return topup, session.url


def topup_complete(
    *, reference: str | None, session_id: str, payment_intent_id: str, amount_cents: int
) -> LedgerEntry | None:
    """Credit a paid Checkout session exactly once; None when there is nothing (more) to credit."""
    topup_id = _topup_id_from(reference)
    topup = TopUp.objects.filter(pk=topup_id).first() if topup_id is not None else None
    if topup is None:
        logger.warning("paid Checkout session %s is not a Plugsky top-up", session_id)
        return None
    if cents_to_micros(amount_cents) != topup.amount_micros:
        logger.error(
            "Checkout session %s paid %d cents for top-up %s of %d µ$; not credited",
            session_id,
            amount_cents,
            topup.pk,
            topup.amount_micros,
        )
        return None
    with transaction.atomic():
        TopUp.objects.filter(pk=topup.pk).exclude(status=TopUpStatus.COMPLETED).update(
            status=TopUpStatus.COMPLETED,
            stripe_session_id=session_id,
            stripe_payment_intent_id=payment_intent_id,
            completed_at=timezone.now(),
        )
        return ledger_entry_create(
            organization_id=topup.organization_id,
            kind=EntryKind.TOPUP,
            amount_micros=topup.amount_micros,
            external_id=session_id,
            description="Stripe Checkout top-up",
        )


def _paid_topup_locked(payment_intent_id: str) -> TopUp | None:
    topup = (
        TopUp.objects.select_for_update()
        .filter(stripe_payment_intent_id=payment_intent_id, status=TopUpStatus.COMPLETED)
        .first()
    )
    if topup is None:
        logger.warning("payment %s is not a completed Plugsky top-up", payment_intent_id)
    return topup


def topup_refund(
    *, payment_intent_id: str, charge_id: str, amount_refunded_cents: int
) -> LedgerEntry | None:
    """Take back refunded credit; `amount_refunded_cents` is the charge's running refund total."""
    with transaction.atomic():
        topup = _paid_topup_locked(payment_intent_id)
        if topup is None:
            return None
        refunded = cents_to_micros(amount_refunded_cents)
        if refunded <= topup.refunded_micros:
            return None
        TopUp.objects.filter(pk=topup.pk).update(refunded_micros=refunded)
        return ledger_entry_create(
            organization_id=topup.organization_id,
            kind=EntryKind.REFUND,
            amount_micros=topup.refunded_micros - refunded,
            external_id=f"{charge_id}:refunded:{amount_refunded_cents}",
            description="Stripe refund",
        )


def topup_dispute_change(
    *, payment_intent_id: str, dispute_id: str, amount_cents: int, is_won: bool = False
) -> LedgerEntry | None:
    """A dispute opened takes the credit back; a dispute won gives it back (once each)."""
    with transaction.atomic():
        topup = _paid_topup_locked(payment_intent_id)
        if topup is None:
            return None
        amount = cents_to_micros(amount_cents)
        return ledger_entry_create(
            organization_id=topup.organization_id,
            kind=EntryKind.ADJUSTMENT,
            amount_micros=amount if is_won else -amount,
            external_id=f"{dispute_id}:won" if is_won else dispute_id,
            description="Stripe dispute won" if is_won else "Stripe dispute opened",
        )


def _on_checkout_paid(session: dict[str, Any]) -> None:
    if session.get("payment_status") != "paid":
        return  # an asynchronous payment: async_payment_succeeded follows
    topup_complete(
        reference=session.get("client_reference_id"),
        session_id=session["id"],
        payment_intent_id=session.get("payment_intent") or "",
        amount_cents=session.get("amount_subtotal") or 0,
    )


def _on_charge_refunded(charge: dict[str, Any]) -> None:
    topup_refund(
        payment_intent_id=charge.get("payment_intent") or "",
        charge_id=charge["id"],
        amount_refunded_cents=charge.get("amount_refunded") or 0,
    )


def _on_dispute_created(dispute: dict[str, Any]) -> None:
    topup_dispute_change(
        payment_intent_id=dispute.get("payment_intent") or "",
        dispute_id=dispute["id"],
        amount_cents=dispute["amount"],
    )


def _on_dispute_closed(dispute: dict[str, Any]) -> None:
    if dispute.get("status") == "won":
        topup_dispute_change(
            payment_intent_id=dispute.get("payment_intent") or "",
            dispute_id=dispute["id"],
            amount_cents=dispute["amount"],
            is_won=True,
        )


_STRIPE_HANDLERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "checkout.session.completed": _on_checkout_paid,
    "checkout.session.async_payment_succeeded": _on_checkout_paid,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": _on_dispute_created,
    "charge.dispute.closed": _on_dispute_closed,
}


def stripe_event_handle(*, event: dict[str, Any]) -> bool:
    """Store a verified event, then act on it; False for a replay, which changes nothing.

    Storing and acting share one transaction: if acting fails, the event is not stored either and
    Stripe's retry gets a second chance.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event)
        except IntegrityError:
            logger.info("Stripe event %s received again; ignored", event["id"])
            return False
        handler = _STRIPE_HANDLERS.get(event["type"])
        if handler is None:
            logger.info("Stripe event %s of type %s acknowledged", event["id"], event["type"])
        else:
            handler(event["data"]["object"])
    return True


# --- Low-balance notices -------------------------------------------------------------------------


def _threshold_crossed(balance_micros: int) -> int | None:
    """The lowest configured threshold the balance is below, if any."""
    below = [t for t in settings.LOW_BALANCE_THRESHOLDS_MICROS if balance_micros < t]
    return min(below, default=None)


def _low_balance_mail(account: CreditAccount, threshold_micros: int) -> None:
    recipients = billing_contacts_for(organization_id=account.organization_id)
    if not recipients:
        return
    send_mail(
        subject=f"Your Plugsky credit is below {usd_display(threshold_micros)}",
        message=(
            f"The credit balance of {account.organization} is "
            f"{usd_display(account.balance_micros)}. API calls stop when it runs out.\n"
            "Add credit on the Billing page of your Plugsky dashboard."
        ),
        from_email=None,
        recipient_list=recipients,
    )


def low_balance_notices_send() -> int:
    """Email each organization once per threshold its balance falls below; returns emails sent.

    A balance that climbs back above a threshold re-arms it for the next crossing.
    """
    thresholds = settings.LOW_BALANCE_THRESHOLDS_MICROS
    if not thresholds:
        return 0
    candidates = CreditAccount.objects.filter(
        Q(balance_micros__lt=max(thresholds)) | Q(low_balance_notified_micros__isnull=False)
    ).select_related("organization")
    sent = 0
    for account in candidates.iterator():
        crossed = _threshold_crossed(account.balance_micros)
        previous = account.low_balance_notified_micros
        if crossed == previous:
            continue
        # Conditional on what we read: of two concurrent runs, one moves it and only that one mails.
        is_moved = CreditAccount.objects.filter(
            organization_id=account.organization_id, low_balance_notified_micros=previous
        ).update(low_balance_notified_micros=crossed)
        if is_moved and crossed is not None and (previous is None or crossed < previous):
            _low_balance_mail(account, crossed)
            sent += 1
    return sent
