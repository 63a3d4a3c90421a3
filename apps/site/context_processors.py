"""Values every template may use."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from apps.billing.pricing import usd_display


def site(request: HttpRequest) -> dict[str, object]:
    return {
        "site_name": "Plugsky",
        "trial_credit_usd": usd_display(settings.BILLING_TRIAL_CREDIT_MICROS),
    }
