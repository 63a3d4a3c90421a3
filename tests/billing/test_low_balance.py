import pytest

from apps.accounts.models import Role
from apps.billing.models import CreditAccount
from apps.billing.notices import low_balance_notices_send
from apps.billing.tasks import billing_low_balance_notify
from tests.billing.helpers import set_balance
from tests.factories import make_member


@pytest.fixture(autouse=True)
def _thresholds(settings):  # type: ignore[no-untyped-def]
    settings.LOW_BALANCE_THRESHOLDS_MICROS = [1_000_000, 100_000]


def test_one_email_per_threshold_crossing(organization, mailoutbox):
    assert low_balance_notices_send() == 0

    set_balance(organization, 900_000)
    assert low_balance_notices_send() == 1
    assert low_balance_notices_send() == 0  # still below $1.00: already told
    [notice] = mailoutbox
    assert notice.subject == "Your Plugsky credit is below $1.00"
    assert notice.to == ["owner@example.com"]
    assert "is $0.90" in notice.body
    assert "Billing page" in notice.body

    set_balance(organization, 50_000)
    assert billing_low_balance_notify() == 1
    assert mailoutbox[-1].subject == "Your Plugsky credit is below $0.10"
    assert low_balance_notices_send() == 0
    assert len(mailoutbox) == 2


def test_a_top_up_re_arms_the_notices(organization, mailoutbox):
    set_balance(organization, 50_000)
    low_balance_notices_send()
    assert len(mailoutbox) == 1  # straight to the lowest threshold: one email, not two

    set_balance(organization, 500_000)  # back above $0.10 only
    assert low_balance_notices_send() == 0
    assert CreditAccount.objects.get(organization=organization).low_balance_notified_micros == (
        1_000_000
    )
    set_balance(organization, 20_000)
    assert low_balance_notices_send() == 1
    assert mailoutbox[-1].subject == "Your Plugsky credit is below $0.10"

    set_balance(organization, 3_000_000)
    assert low_balance_notices_send() == 0
    assert CreditAccount.objects.get(organization=organization).low_balance_notified_micros is None
    set_balance(organization, 999_999)
    assert low_balance_notices_send() == 1
    assert len(mailoutbox) == 3


def test_owners_and_admins_are_told_members_are_not(organization, mailoutbox):
    make_member(organization, "admin@example.com", role=Role.ADMIN)
    make_member(organization, "member@example.com", role=Role.MEMBER)
    set_balance(organization, 10)
    low_balance_notices_send()
    assert mailoutbox[0].to == ["admin@example.com", "owner@example.com"]
