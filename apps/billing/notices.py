"""Low-balance notices: one email per threshold crossed, re-armed when the balance recovers."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q

from apps.billing.models import CreditAccount
from apps.billing.pricing import usd_display
from apps.billing.selectors import billing_contacts_for


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
