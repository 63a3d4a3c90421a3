"""Stripe faked at its HTTP boundary: the real `stripe` library talks to this, not the network.

Responses follow the shapes in Stripe's API reference (the Checkout Session object, the error
object); requests are recorded so tests can assert exactly what would have been sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import stripe


@dataclass
class SentRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    params: dict[str, str]


def checkout_session_object(params: dict[str, str], session_id: str) -> dict[str, Any]:
    """A Checkout Session as POST /v1/checkout/sessions answers it, for the params sent."""
    amount = int(params["line_items[0][price_data][unit_amount]"])
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "cancel_url": params["cancel_url"],
        "client_reference_id": params["client_reference_id"],
        "created": int(time.time()),
        "currency": params["line_items[0][price_data][currency]"],
        "customer": None,
        "customer_email": params.get("customer_email"),
        "expires_at": int(time.time()) + 86_400,
        "livemode": False,
        "metadata": {
            key.removeprefix("metadata[").removesuffix("]"): value
            for key, value in params.items()
            if key.startswith("metadata[")
        },
        "mode": "payment",
        "payment_intent": None,
        "payment_status": "unpaid",
        "status": "open",
        "success_url": params["success_url"],
        "url": f"https://checkout.stripe.com/c/pay/{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
    }


@dataclass
class FakeStripeHTTP(stripe.HTTPClient):
    """Answers POST /v1/checkout/sessions; `error` makes it answer with a Stripe error instead."""

    name = "fake"
    sent: list[SentRequest] = field(default_factory=list)
    error: tuple[int, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def request(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        params = dict(parse_qsl(post_data or "", keep_blank_values=True))
        self.sent.append(SentRequest(method, url, headers, params))
        response_headers = {"Request-Id": f"req_fake{len(self.sent)}"}
        if self.error is not None:
            status, body = self.error
            return json.dumps(body).encode(), status, response_headers
        assert (method, url) == ("post", "https://api.stripe.com/v1/checkout/sessions")
        body = checkout_session_object(params, f"cs_test_a1b2c3d4e5f6{len(self.sent)}")
        return json.dumps(body).encode(), 200, response_headers

    def close(self) -> None:
        pass


def event(event_type: str, data_object: dict[str, Any], event_id: str) -> dict[str, Any]:
    """A webhook Event object wrapping `data_object`."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-06-30.basil",
        "created": int(time.time()),
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signed(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send, computed by the stripe library itself."""
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
