"""Values every template may use."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    return {
        "site_name": "Plugsky",
        "trial_credit_usd": f"${settings.BILLING_TRIAL_CREDIT_MICROS / 1_000_000:.2f}",
    }
