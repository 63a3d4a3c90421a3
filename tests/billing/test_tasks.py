from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.billing.models import CreditHold
from apps.billing.tasks import billing_holds_release_stale
from plugsky_site.celery import app
from tests.billing.helpers import account, hold_for


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {
        "apps.usage.tasks.usage_rollup_recent",
        "apps.billing.tasks.billing_holds_release_stale",
        "apps.billing.tasks.billing_low_balance_notify",
        "apps.billing.tasks.billing_reconcile",
    }
    assert scheduled <= set(app.tasks)


def test_the_stale_hold_task_is_safe_to_run_twice(organization):
    hold = hold_for(organization, 500)
    CreditHold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert billing_holds_release_stale() == 1
    assert billing_holds_release_stale() == 0
    assert account(organization).held_micros == 0
