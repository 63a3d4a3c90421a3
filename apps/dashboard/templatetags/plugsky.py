"""Template helpers shared by the public pages and the dashboard."""

from __future__ import annotations

from typing import Any

from django import template

from apps.billing.pricing import usd_display
from apps.dashboard.selectors import organizations_of
from apps.usage.endpoints import Unit, unit_of
from apps.usage.models import UsageRecord

register = template.Library()


@register.filter
def usd(amount_micros: int | None) -> str:
    """Micro-dollars as dollars: 5_000_000 → "$5.00", 123 → "$0.000123"."""
    return usd_display(amount_micros or 0)


@register.filter
def usd_cents(amount_micros: int | None) -> str:
    """Micro-dollars rounded to the cent, for balances: 4_987_654 → "$4.99"."""
    cents = round((amount_micros or 0) / 10_000)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


@register.filter
def per_mtok(amount_micros: int) -> str:
    """A catalog price (micro-dollars per million tokens) for people: "$0.02"."""
    return usd_display(amount_micros)


@register.filter
def thousands(value: int | None) -> str:
    return f"{value or 0:,}"


@register.filter
def usage_amount(record: UsageRecord) -> str:
    """What a call used, in its own unit: "1,200 / 35" tokens, "12 s" of audio, "340 chars"."""
    unit = unit_of(record.endpoint)
    if unit == Unit.SECONDS:
        return f"{record.prompt_tokens:,} s"
    if unit == Unit.CHARACTERS:
        return f"{record.prompt_tokens:,} chars"
    return f"{record.prompt_tokens:,} / {record.completion_tokens:,}"


@register.filter
def audit_details(details: dict[str, Any] | None) -> str:
    """An audit event's details, readable: "role: admin, previous_role: member"."""
    return ", ".join(f"{name}: {value}" for name, value in (details or {}).items())


@register.inclusion_tag("dashboard/_switcher.html", takes_context=True)
def organization_switcher(context: dict[str, Any], organization: Any) -> dict[str, Any]:
    request = context["request"]
    return {
        "organization": organization,
        "memberships": list(organizations_of(user_id=request.user.pk)),
    }
