import pytest

from apps.accounts.models import User
from apps.billing.models import EntryKind, LedgerEntry
from tests.billing.helpers import account, hold_for, ledger_sum


@pytest.fixture
def staff_client(client, db):  # type: ignore[no-untyped-def]
    staff = User.objects.create_superuser("staff@example.com", "pw-long-enough-123")
    client.force_login(staff)
    return client


@pytest.mark.parametrize(
    "model", ["creditaccount", "ledgerentry", "credithold", "spendlimit", "topup", "stripeevent"]
)
def test_every_billing_model_has_an_admin_page(staff_client, organization, model):
    hold_for(organization, 10)
    assert staff_client.get(f"/admin/billing/{model}/").status_code == 200


@pytest.mark.parametrize("model", ["usageminute", "usageday", "usagerollupstate"])
def test_the_rollup_admin_pages_load(staff_client, model):  # type: ignore[no-untyped-def]
    assert staff_client.get(f"/admin/usage/{model}/").status_code == 200


def test_staff_adjust_credit_through_the_ledger(staff_client, organization):
    response = staff_client.post(
        "/admin/billing/ledgerentry/add/",
        {
            "organization": organization.pk,
            "amount_micros": "-1500000",
            "description": "duplicate charge",
        },
    )
    assert response.status_code == 302
    entry = LedgerEntry.objects.get(kind=EntryKind.ADJUSTMENT)
    assert entry.amount_micros == -1_500_000
    assert entry.description == "duplicate charge (by staff@example.com)"
    assert account(organization).balance_micros == 3_500_000 == ledger_sum(organization)


def test_money_records_cannot_be_edited_in_the_admin(staff_client, organization):
    entry = LedgerEntry.objects.get(organization=organization)
    page = staff_client.get(f"/admin/billing/ledgerentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert 'name="amount_micros"' not in page.content.decode()
    assert staff_client.get(f"/admin/billing/ledgerentry/{entry.pk}/delete/").status_code == 403
