"""Thin views: the billing page, Checkout creation and the Stripe webhook."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.models import Organization, User
from apps.accounts.selectors import membership_for, personal_organization_for
from apps.billing import stripe_gateway
from apps.billing.errors import InvalidTopUpAmount, TopUpsNotConfigured
from apps.billing.forms import TopUpForm
from apps.billing.pricing import cents_to_micros, usd_display
from apps.billing.selectors import credit_account_for, topup_presets_cents, topups_are_configured
from apps.billing.topups import stripe_event_handle, topup_checkout_start
from apps.dashboard.selectors import (
    ledger_for,
    overview_for,
    receipts_for,
    usage_debits_by_day,
)


def _organization_for(user: User, organization_id: str | int | None) -> Organization:
    """The organization named in the request (default: the user's own); 404 to non-members."""
    if not organization_id:
        return personal_organization_for(user=user)
    if not str(organization_id).isdigit():
        raise Http404("No such organization.")
    organization = Organization.objects.filter(pk=int(organization_id)).first()
    if organization is None or membership_for(user=user, organization=organization) is None:
        raise Http404("No such organization.")
    return organization


def _page(
    request: HttpRequest, organization: Organization, *, error: str = "", status: int = 200
) -> HttpResponse:
    account = credit_account_for(organization=organization)
    membership = membership_for(user=request.user, organization=organization)  # type: ignore[arg-type]
    is_manager = membership is not None and membership.is_manager
    context = {
        "section": "billing",
        "organization": organization,
        "membership": membership,
        "is_manager": is_manager,
        "overview": overview_for(organization=organization),
        "ledger": ledger_for(organization=organization) if is_manager else [],
        "usage_debits": usage_debits_by_day(organization=organization) if is_manager else [],
        "receipts": receipts_for(organization=organization) if is_manager else [],
        "topup_result": request.GET.get("topup", ""),
        "topup_min_usd": usd_display(cents_to_micros(settings.BILLING_TOPUP_MIN_CENTS)),
        "topup_max_usd": usd_display(cents_to_micros(settings.BILLING_TOPUP_MAX_CENTS)),
        "balance_usd": usd_display(account.balance_micros),
        "held_usd": usd_display(account.held_micros) if account.held_micros else "",
        "topups_configured": topups_are_configured(),
        "can_top_up": is_manager,
        "presets": [
            (f"{cents // 100}.{cents % 100:02d}", usd_display(cents_to_micros(cents)))
            for cents in topup_presets_cents()
        ],
        "error": error,
    }
    return render(request, "billing/page.html", context, status=status)


@login_required
@require_GET
def billing_page(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    return _page(request, _organization_for(user, request.GET.get("organization")))


@login_required
@require_POST
def checkout_create(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    form = TopUpForm(request.POST)
    if not form.is_valid():
        organization = _organization_for(user, request.POST.get("organization"))
        return _page(request, organization, error="Enter an amount in dollars.", status=400)
    organization = _organization_for(user, form.cleaned_data["organization"])
    page_url = request.build_absolute_uri(reverse("billing:page"))
    try:
        _, checkout_url = topup_checkout_start(
            organization=organization,
            user=user,
            amount_cents=form.amount_cents,
            success_url=f"{page_url}?organization={organization.pk}&topup=success",
            cancel_url=f"{page_url}?organization={organization.pk}&topup=cancelled",
        )
    except TopUpsNotConfigured:
        return _page(request, organization, error="Top-ups are not configured.", status=503)
    except InvalidTopUpAmount as error:
        return _page(request, organization, error=str(error), status=400)
    except stripe_gateway.CheckoutFailed:
        message = "Stripe could not open a checkout right now. Please try again."
        return _page(request, organization, error=message, status=502)
    response = HttpResponseRedirect(checkout_url)
    response.status_code = 303  # "See Other": the browser follows with a GET, as Stripe advises
    return response


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:
        event = stripe_gateway.webhook_event_verify(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
    except stripe_gateway.InvalidWebhook as error:
        return JsonResponse({"error": f"Invalid webhook: {error}"}, status=400)
    is_new = stripe_event_handle(event=event)
    return JsonResponse({"received": True, "duplicate": not is_new})
