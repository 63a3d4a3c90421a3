import json
import time

import pytest
import stripe

from apps.billing.models import EntryKind, LedgerEntry, StripeEvent, TopUp, TopUpStatus
from apps.billing.topups import stripe_event_handle, topup_complete
from tests.billing.fake_stripe import FakeStripeHTTP, event, signed
from tests.billing.helpers import account
from tests.factories import make_member

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"


@pytest.fixture
def stripe_http(settings, monkeypatch):  # type: ignore[no-untyped-def]
    settings.STRIPE_SECRET_KEY = "sk_test_51PlugskyFake"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    fake = FakeStripeHTTP()
    monkeypatch.setattr(stripe, "default_http_client", fake)
    return fake


@pytest.fixture
def owner_client(client, owner):  # type: ignore[no-untyped-def]
    client.force_login(owner)
    return client


def checkout(client, organization, amount_usd):  # type: ignore[no-untyped-def]
    return client.post(
        "/billing/checkout", {"organization": organization.pk, "amount_usd": amount_usd}
    )


def deliver(client, body: dict, *, secret: str = WEBHOOK_SECRET, signature: str | None = None):  # type: ignore[no-untyped-def]
    payload = json.dumps(body)
    headers = {"HTTP_STRIPE_SIGNATURE": signature or signed(payload, secret)}
    return client.post(
        "/billing/stripe/webhook", payload, content_type="application/json", **headers
    )


# --- Checkout ------------------------------------------------------------------------------------


def test_checkout_opens_a_stripe_session_for_the_amount(owner_client, organization, stripe_http):
    response = checkout(owner_client, organization, "25")

    topup = TopUp.objects.get()
    assert (topup.organization, topup.amount_micros, topup.status) == (
        organization,
        25_000_000,
        TopUpStatus.OPEN,
    )
    assert topup.stripe_session_id == "cs_test_a1b2c3d4e5f61"
    assert response.status_code == 303
    assert response["Location"].startswith(
        "https://checkout.stripe.com/c/pay/cs_test_a1b2c3d4e5f61"
    )

    [sent] = stripe_http.sent
    assert sent.headers["Authorization"] == "Bearer sk_test_51PlugskyFake"
    assert sent.headers["Idempotency-Key"] == f"plugsky-topup-{topup.pk}"
    assert sent.params["mode"] == "payment"
    assert sent.params["client_reference_id"] == f"plugsky-topup-{topup.pk}"
    assert sent.params["customer_email"] == "owner@example.com"
    assert sent.params["line_items[0][price_data][unit_amount]"] == "2500"
    assert sent.params["line_items[0][price_data][currency]"] == "usd"
    assert sent.params["line_items[0][quantity]"] == "1"
    assert sent.params["metadata[plugsky_organization_id]"] == str(organization.pk)
    assert (
        sent.params["payment_intent_data[metadata][plugsky_topup]"] == f"plugsky-topup-{topup.pk}"
    )
    assert sent.params["success_url"].startswith("http://testserver/billing/?organization=")
    assert account(organization).balance_micros == 5_000_000  # nothing until Stripe says paid


def test_a_custom_amount_is_charged_to_the_cent(owner_client, organization, stripe_http):
    checkout(owner_client, organization, "12.34")
    assert stripe_http.sent[0].params["line_items[0][price_data][unit_amount]"] == "1234"
    assert TopUp.objects.get().amount_micros == 12_340_000


@pytest.mark.parametrize("amount_usd", ["4.99", "1000.01", "12.345", "-5", "ten"])
def test_amounts_outside_the_bounds_are_refused(
    owner_client, organization, stripe_http, amount_usd
):
    response = checkout(owner_client, organization, amount_usd)
    assert response.status_code == 400
    assert stripe_http.sent == []
    assert not TopUp.objects.exists()


def test_the_bounds_themselves_are_accepted(owner_client, organization, stripe_http):
    assert checkout(owner_client, organization, "5").status_code == 303
    assert checkout(owner_client, organization, "1000").status_code == 303


def test_a_member_cannot_add_credit(client, organization, member, stripe_http):
    client.force_login(member)
    assert checkout(client, organization, "25").status_code == 403
    assert stripe_http.sent == []
    assert not TopUp.objects.exists()


def test_an_outsider_cannot_see_or_pay_for_the_organization(
    client, organization, outsider, stripe_http
):
    client.force_login(outsider)
    assert checkout(client, organization, "25").status_code == 404
    assert client.get(f"/billing/?organization={organization.pk}").status_code == 404
    assert stripe_http.sent == []
    assert not TopUp.objects.exists()


def test_an_admin_can_add_credit(client, organization, stripe_http):
    from apps.accounts.models import Role

    admin = make_member(organization, "admin@example.com", role=Role.ADMIN)
    client.force_login(admin)
    assert checkout(client, organization, "10").status_code == 303


def test_without_a_stripe_key_top_ups_are_not_configured(
    owner_client, organization, settings, monkeypatch
):
    settings.STRIPE_SECRET_KEY = ""
    fake = FakeStripeHTTP()
    monkeypatch.setattr(stripe, "default_http_client", fake)

    page = owner_client.get("/billing/")
    assert page.status_code == 200
    assert "Top-ups are not configured" in page.content.decode()
    assert "$5.00" in page.content.decode()

    response = checkout(owner_client, organization, "25")
    assert response.status_code == 503
    assert "Top-ups are not configured" in response.content.decode()
    assert fake.sent == []
    assert not TopUp.objects.exists()


def test_the_billing_page_offers_the_presets_when_configured(owner_client, stripe_http):
    page = owner_client.get("/billing/").content.decode()
    assert "not configured" not in page
    assert '<button type="submit" name="amount_usd" value="25.00">Add $25.00</button>' in page


def test_a_member_is_told_to_ask_a_manager(client, member, organization, stripe_http):
    client.force_login(member)
    page = client.get(f"/billing/?organization={organization.pk}").content.decode()
    assert "Ask an owner or admin" in page
    assert "amount_usd" not in page


def test_a_stripe_error_is_a_502_and_the_top_up_is_marked_failed(
    owner_client, organization, stripe_http
):
    stripe_http.error = (
        400,
        {
            "error": {
                "type": "invalid_request_error",
                "code": "parameter_invalid_integer",
                "message": "Invalid integer: unit_amount",
                "param": "line_items[0][price_data][unit_amount]",
            }
        },
    )
    response = checkout(owner_client, organization, "25")
    assert response.status_code == 502
    assert TopUp.objects.get().status == TopUpStatus.FAILED
    assert account(organization).balance_micros == 5_000_000


def test_a_malformed_organization_is_a_404(owner_client, stripe_http):
    assert owner_client.get("/billing/?organization=abc").status_code == 404
    response = owner_client.post("/billing/checkout", {"organization": "abc", "amount_usd": "25"})
    assert response.status_code == 404
    assert stripe_http.sent == []


def test_checkout_needs_a_login(client, organization, stripe_http):
    response = checkout(client, organization, "25")
    assert response.status_code == 302
    assert stripe_http.sent == []


# --- Webhooks ------------------------------------------------------------------------------------


@pytest.fixture
def open_topup(owner_client, organization, stripe_http):  # type: ignore[no-untyped-def]
    checkout(owner_client, organization, "25")
    return TopUp.objects.get()


def session_completed(topup, *, event_id="evt_1Checkout", payment_status="paid", amount=2500):  # type: ignore[no-untyped-def]
    session = {
        "id": topup.stripe_session_id,
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "client_reference_id": f"plugsky-topup-{topup.pk}",
        "currency": "usd",
        "metadata": {"plugsky_topup": f"plugsky-topup-{topup.pk}"},
        "mode": "payment",
        "payment_intent": "pi_3PlugskyPaid",
        "payment_status": payment_status,
        "status": "complete",
    }
    return event("checkout.session.completed", session, event_id)


def test_a_paid_checkout_credits_once_however_often_it_is_delivered(
    client, organization, open_topup
):
    body = session_completed(open_topup)
    first = deliver(client, body)
    replay = deliver(client, body)

    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert (replay.status_code, replay.json()) == (200, {"received": True, "duplicate": True})
    credit = LedgerEntry.objects.get(kind=EntryKind.TOPUP)
    assert (credit.amount_micros, credit.external_id) == (25_000_000, open_topup.stripe_session_id)
    assert account(organization).balance_micros == 30_000_000
    topup = TopUp.objects.get()
    assert (topup.status, topup.stripe_payment_intent_id) == (
        TopUpStatus.COMPLETED,
        "pi_3PlugskyPaid",
    )
    assert StripeEvent.objects.count() == 1


def test_another_event_for_the_same_session_does_not_credit_again(client, organization, open_topup):
    deliver(client, session_completed(open_topup))
    later = session_completed(open_topup, event_id="evt_2Async")
    later["type"] = "checkout.session.async_payment_succeeded"
    assert deliver(client, later).status_code == 200
    assert account(organization).balance_micros == 30_000_000
    assert StripeEvent.objects.count() == 2


def test_an_unpaid_session_is_not_credited_until_payment_succeeds(client, organization, open_topup):
    deliver(client, session_completed(open_topup, payment_status="unpaid"))
    assert account(organization).balance_micros == 5_000_000
    paid = session_completed(open_topup, event_id="evt_3Paid")
    paid["type"] = "checkout.session.async_payment_succeeded"
    deliver(client, paid)
    assert account(organization).balance_micros == 30_000_000


def test_a_session_paid_for_another_amount_is_not_credited(client, organization, open_topup):
    deliver(client, session_completed(open_topup, amount=100))
    assert account(organization).balance_micros == 5_000_000
    assert TopUp.objects.get().status == TopUpStatus.OPEN


def test_an_unknown_reference_credits_nothing(organization):
    assert (
        topup_complete(
            reference="someone-else", session_id="cs_x", payment_intent_id="pi_x", amount_cents=100
        )
        is None
    )
    assert account(organization).balance_micros == 5_000_000


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "t=1700000000,v1=deadbeef",
        "not a header",
    ],
)
def test_a_bad_signature_is_a_400_and_changes_nothing(client, organization, open_topup, signature):
    body = session_completed(open_topup)
    response = client.post(
        "/billing/stripe/webhook",
        json.dumps(body),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()
    assert account(organization).balance_micros == 5_000_000


def test_a_body_signed_with_another_secret_is_a_400(client, organization, open_topup):
    response = deliver(client, session_completed(open_topup), secret="whsec_someone_else")
    assert response.status_code == 400
    assert account(organization).balance_micros == 5_000_000


def test_a_replayed_old_signature_is_a_400(client, organization, open_topup):
    payload = json.dumps(session_completed(open_topup))
    old = signed(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    response = client.post(
        "/billing/stripe/webhook",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=old,
    )
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_a_tampered_body_is_a_400(client, organization, open_topup):
    payload = json.dumps(session_completed(open_topup))
    signature = signed(payload, WEBHOOK_SECRET)
    tampered = payload.replace("2500", "250000")
    response = client.post(
        "/billing/stripe/webhook",
        tampered,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )
    assert response.status_code == 400
    assert account(organization).balance_micros == 5_000_000


def test_without_a_webhook_secret_every_webhook_is_refused(
    client, settings, organization, open_topup
):
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert deliver(client, session_completed(open_topup)).status_code == 400
    assert not StripeEvent.objects.exists()


def test_an_event_whose_handling_fails_is_not_stored_so_stripes_retry_works(
    organization, open_topup, monkeypatch
):
    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")

    body = session_completed(open_topup)
    with monkeypatch.context() as patch, pytest.raises(RuntimeError):
        patch.setattr("apps.billing.topups.topup_complete", broken)
        stripe_event_handle(event=body)
    assert not StripeEvent.objects.exists()

    assert stripe_event_handle(event=body) is True
    assert account(organization).balance_micros == 30_000_000


def test_an_unknown_event_type_is_acknowledged_and_stored(client, organization, stripe_http):
    body = event("customer.created", {"id": "cus_1", "object": "customer"}, "evt_4Customer")
    assert deliver(client, body).status_code == 200
    assert StripeEvent.objects.get().type == "customer.created"
    assert account(organization).balance_micros == 5_000_000


def charge_refunded(amount_refunded: int, event_id: str):  # type: ignore[no-untyped-def]
    charge = {
        "id": "ch_3PlugskyCharge",
        "object": "charge",
        "amount": 2500,
        "amount_captured": 2500,
        "amount_refunded": amount_refunded,
        "currency": "usd",
        "payment_intent": "pi_3PlugskyPaid",
        "refunded": amount_refunded == 2500,
        "status": "succeeded",
    }
    return event("charge.refunded", charge, event_id)


def test_refunds_become_negative_entries_for_what_was_refunded(client, organization, open_topup):
    deliver(client, session_completed(open_topup))
    deliver(client, charge_refunded(1000, "evt_5Refund"))
    deliver(client, charge_refunded(1000, "evt_5Refund"))  # replay
    deliver(client, charge_refunded(2500, "evt_6Refund"))  # running total: 15.00 more

    refunds = LedgerEntry.objects.filter(kind=EntryKind.REFUND).order_by("pk")
    assert [entry.amount_micros for entry in refunds] == [-10_000_000, -15_000_000]
    assert account(organization).balance_micros == 5_000_000
    assert TopUp.objects.get().refunded_micros == 25_000_000


def test_a_refund_of_an_unknown_payment_changes_nothing(client, organization, stripe_http):
    assert deliver(client, charge_refunded(1000, "evt_7Refund")).status_code == 200
    assert not LedgerEntry.objects.filter(kind=EntryKind.REFUND).exists()


def dispute(status: str, event_type: str, event_id: str):  # type: ignore[no-untyped-def]
    body = {
        "id": "dp_1PlugskyDispute",
        "object": "dispute",
        "amount": 2500,
        "charge": "ch_3PlugskyCharge",
        "currency": "usd",
        "payment_intent": "pi_3PlugskyPaid",
        "reason": "fraudulent",
        "status": status,
    }
    return event(event_type, body, event_id)


def test_a_dispute_takes_the_credit_back_and_a_won_dispute_returns_it(
    client, organization, open_topup
):
    deliver(client, session_completed(open_topup))
    deliver(client, dispute("needs_response", "charge.dispute.created", "evt_8Dispute"))
    assert account(organization).balance_micros == 5_000_000
    adjustment = LedgerEntry.objects.get(kind=EntryKind.ADJUSTMENT)
    assert (adjustment.amount_micros, adjustment.external_id) == (-25_000_000, "dp_1PlugskyDispute")

    deliver(client, dispute("won", "charge.dispute.closed", "evt_9Closed"))
    deliver(client, dispute("won", "charge.dispute.closed", "evt_10Closed"))  # a second delivery
    assert account(organization).balance_micros == 30_000_000


def test_a_lost_dispute_keeps_the_credit_taken(client, organization, open_topup):
    deliver(client, session_completed(open_topup))
    deliver(client, dispute("needs_response", "charge.dispute.created", "evt_11Dispute"))
    deliver(client, dispute("lost", "charge.dispute.closed", "evt_12Closed"))
    assert account(organization).balance_micros == 5_000_000
