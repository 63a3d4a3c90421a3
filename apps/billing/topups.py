"""Top-ups through Stripe Checkout, and the webhook events that credit, refund or dispute them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import Organization, User
from apps.accounts.selectors import membership_for
from apps.billing import stripe_gateway
from apps.billing.errors import InvalidTopUpAmount, TopUpsNotConfigured
from apps.billing.ledger import ledger_entry_create
from apps.billing.models import EntryKind, LedgerEntry, StripeEvent, TopUp, TopUpStatus
from apps.billing.pricing import cents_to_micros, usd_display

logger = logging.getLogger(__name__)


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
