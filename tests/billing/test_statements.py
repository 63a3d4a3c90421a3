"""The one-statement hold and settlement (apps.billing.statements) against the models and the
ORM path they stand in for. The behaviour both paths share is tested in test_holds.py."""

import re

from django.db import connection
from django.db.models import Model

from apps.billing import statements
from apps.billing.holds import credit_settle
from apps.billing.limits import spend_limit_set
from apps.billing.models import CreditHold, EntryKind, LedgerEntry
from apps.billing.selectors import ledger_drifts
from apps.usage.models import UsageRecord
from apps.usage.services import usage_record_fields
from tests.billing.helpers import account, hold_for, outcome_for


def _inserted_columns(sql: str, model: type[Model]) -> set[str]:
    table = re.escape(connection.ops.quote_name(model._meta.db_table))
    match = re.search(rf"INSERT INTO {table} \(([^)]*)\)", sql)
    assert match is not None, f"no INSERT INTO {model._meta.db_table}"
    return {column.strip().strip('"') for column in match.group(1).split(",")}


def _columns(model: type[Model]) -> set[str]:
    return {str(field.column) for field in model._meta.concrete_fields} - {"id"}


def test_the_statements_write_every_column_of_their_tables():
    # A column added to a model must be added here too, or its rows would miss a value.
    assert _inserted_columns(statements._hold_sql(), CreditHold) == _columns(CreditHold)
    assert _inserted_columns(statements._settle_sql(), LedgerEntry) == _columns(LedgerEntry)
    assert _inserted_columns(statements._settle_sql(), UsageRecord) == _columns(UsageRecord)


def _stored_fields(instance: Model) -> dict[str, object]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_the_returned_hold_and_record_are_the_stored_rows(organization):
    hold = hold_for(organization, 900)
    assert hold.org_limit_id is None and hold.key_limit_id is None
    assert _stored_fields(hold) == _stored_fields(CreditHold.objects.get(pk=hold.pk))

    outcome = outcome_for(hold.request_id, organization, prompt_tokens=10, completion_tokens=4)
    record = credit_settle(hold=hold, outcome=outcome, cost_micros=18)
    assert _stored_fields(record) == _stored_fields(UsageRecord.objects.get(pk=record.pk))
    debit = LedgerEntry.objects.get(usage_record=record)
    assert (debit.kind, debit.amount_micros, debit.created_at) == (
        EntryKind.USAGE,
        -18,
        record.created_at,
    )
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        5_000_000 - 18,
        0,
    )
    assert ledger_drifts() == []


def test_an_unbilled_call_leaves_no_debit(organization):
    hold = hold_for(organization, 900)
    outcome = outcome_for(hold.request_id, organization, status=499)
    record = credit_settle(hold=hold, outcome=outcome, cost_micros=0)
    assert not LedgerEntry.objects.filter(usage_record=record).exists()
    assert (account(organization).balance_micros, account(organization).held_micros) == (
        5_000_000,
        0,
    )


def test_a_spend_limit_takes_the_full_path_and_counts(organization):
    limit = spend_limit_set(organization=organization, api_key=None, monthly_limit_micros=10_000)
    hold = hold_for(organization, 900)
    assert hold.org_limit_id == limit.pk
    limit.refresh_from_db()
    assert limit.held_micros == 900

    statement_hold = statements.hold_without_limits(
        organization_id=organization.pk,
        api_key_id=None,
        request_id="req_statement_refused",
        amount_micros=1,
        now=hold.created_at,
        expires_at=hold.expires_at,
    )
    assert statement_hold is None  # refused, and nothing written
    assert not CreditHold.objects.filter(request_id="req_statement_refused").exists()
    assert account(organization).held_micros == 900


def test_a_hold_no_longer_active_is_settled_by_the_full_path(organization):
    hold = hold_for(organization, 900)
    CreditHold.objects.filter(pk=hold.pk).update(status="expired")
    outcome = outcome_for(hold.request_id, organization, prompt_tokens=10)
    assert (
        statements.settle_without_limits(
            hold=hold,
            record_values=usage_record_fields(outcome),
            charged_micros=10,
            now=hold.created_at,
        )
        is None
    )
    assert not UsageRecord.objects.exists()  # the statement wrote nothing
    record = credit_settle(hold=hold, outcome=outcome, cost_micros=10)
    assert record.cost_micros == 10  # served, so charged
