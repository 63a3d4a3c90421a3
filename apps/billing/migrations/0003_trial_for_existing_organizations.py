"""Organizations created before billing existed get their trial credit too, once."""

from django.conf import settings
from django.db import migrations
from django.db.models import Exists, OuterRef


def grant_missing_trials(apps, schema_editor):
    Organization = apps.get_model("accounts", "Organization")
    CreditAccount = apps.get_model("billing", "CreditAccount")
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    trial = LedgerEntry.objects.filter(organization=OuterRef("pk"), kind="trial_grant")
    amount = settings.BILLING_TRIAL_CREDIT_MICROS
    for organization in Organization.objects.filter(~Exists(trial)).iterator():
        LedgerEntry.objects.create(
            organization=organization,
            kind="trial_grant",
            amount_micros=amount,
            description="Trial credit",
        )
        account, _ = CreditAccount.objects.get_or_create(organization=organization)
        account.balance_micros += amount
        account.save(update_fields=["balance_micros"])


class Migration(migrations.Migration):
    # No concurrent writers during a migration, so plain reads and saves are safe here.
    dependencies = [("billing", "0002_ledger_append_only"), ("accounts", "0001_initial")]

    operations = [migrations.RunPython(grant_missing_trials, migrations.RunPython.noop)]
