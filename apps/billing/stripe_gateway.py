"""The Stripe boundary: Checkout session creation and webhook signature verification.

Nothing else in Plugsky imports `stripe`. Amounts cross this boundary in Stripe's minor units
(US cents). Tests fake Stripe at its HTTP boundary by setting `stripe.default_http_client`, which
the client below uses when it is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from stripe.params.checkout import SessionCreateParams

WEBHOOK_TOLERANCE_S = 300


class InvalidWebhook(Exception):
    """The body is not a Stripe event signed with our webhook secret."""


class CheckoutFailed(Exception):
    """Stripe did not open the Checkout session (network, API key, or a refused request)."""


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        http_client=stripe.default_http_client,
        max_network_retries=2,
    )


def checkout_session_create(
    *,
    reference: str,
    amount_cents: int,
    customer_email: str,
    success_url: str,
    cancel_url: str,
    metadata: dict[str, str],
) -> CheckoutSession:
    """Open a one-off Checkout payment for `amount_cents` of credit; else CheckoutFailed."""
    params: SessionCreateParams = {
        "mode": "payment",
        "client_reference_id": reference,
        "customer_email": customer_email,
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": settings.STRIPE_CURRENCY,
                    "unit_amount": amount_cents,
                    "product_data": {"name": "Plugsky API credit"},
                },
            }
        ],
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    try:
        # Stripe answers a retried request with the same idempotency key with its first answer.
        session = _client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": reference}
        )
    except stripe.StripeError as error:
        raise CheckoutFailed(str(error)) from error
    if not session.url:
        raise CheckoutFailed(f"Checkout session {session.id} has no URL")
    return CheckoutSession(id=session.id, url=session.url)


def webhook_event_verify(*, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event in a webhook body, after checking its Stripe-Signature; else InvalidWebhook."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise InvalidWebhook("STRIPE_WEBHOOK_SECRET is not set")
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, WEBHOOK_TOLERANCE_S)
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError) as error:
        raise InvalidWebhook(str(error)) from error
    if not isinstance(event, dict) or not {"id", "type", "data"} <= event.keys():
        raise InvalidWebhook("not a Stripe event")
    return event
