"""The hold and the settlement of an ordinary call, each as one SQL statement.

Profiled (issue 13), the ORM's hold and settlement cost ~6 ms of the web process's CPU per call:
eight queries compiled by the ORM and three round trips of transaction control. Most calls
count against no spend limit, and for them each step is a single statement, atomic on its own
(PostgreSQL runs a statement's data-modifying CTEs in one snapshot, all or nothing), with no
ORM in the way. `apps.billing.holds` uses these first and falls back to its ORM transaction for
the rest: an organization or key with a spend limit, or a hold that was not active.

The columns written here are checked against the models by tests/billing/test_statements.py, so
a new column on one of these tables fails the tests rather than production.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import AutoField, Field, Model

from apps.billing.models import (
    CreditAccount,
    CreditHold,
    EntryKind,
    HoldStatus,
    LedgerEntry,
    SpendLimit,
)
from apps.usage.models import UsageRecord


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@cache
def _usage_record_fields() -> list[Field[Any, Any]]:
    return [
        field for field in UsageRecord._meta.concrete_fields if not isinstance(field, AutoField)
    ]


def _usage_record_row(values: dict[str, Any]) -> dict[str, Any]:
    """Every column's value by attribute name: `values`, and the model's defaults for the rest."""
    return {
        field.attname: values[field.attname] if field.attname in values else field.get_default()
        for field in _usage_record_fields()
    }


@cache
def _hold_sql() -> str:
    hold, account = _table(CreditHold), _table(CreditAccount)
    return f"""
WITH covered AS (
    UPDATE {account} SET held_micros = held_micros + %(amount)s
    WHERE organization_id = %(organization)s
      AND balance_micros >= held_micros + %(amount)s
      AND NOT EXISTS (
          SELECT 1 FROM {_table(SpendLimit)}
          WHERE (organization_id = %(organization)s AND api_key_id IS NULL)
             OR (api_key_id = %(api_key)s)
      )
    RETURNING organization_id
)
INSERT INTO {hold} (request_id, organization_id, api_key_id, amount_micros, status,
                    org_limit_id, key_limit_id, created_at, expires_at, closed_at)
SELECT %(request_id)s, organization_id, %(api_key)s, %(amount)s, %(active)s,
       NULL, NULL, %(now)s, %(expires_at)s, NULL
FROM covered
RETURNING id"""


def hold_without_limits(
    *,
    organization_id: int,
    api_key_id: int | None,
    request_id: str,
    amount_micros: int,
    now: datetime,
    expires_at: datetime,
) -> CreditHold | None:
    """The hold, or None when the balance does not cover it or a spend limit applies (then
    nothing was written, and the caller takes the full path)."""
    params = {
        "amount": amount_micros,
        "organization": organization_id,
        "api_key": api_key_id,
        "request_id": request_id,
        "active": HoldStatus.ACTIVE.value,
        "now": now,
        "expires_at": expires_at,
    }
    with connection.cursor() as cursor:
        cursor.execute(_hold_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    hold = CreditHold(
        id=row[0],
        request_id=request_id,
        organization_id=organization_id,
        api_key_id=api_key_id,
        amount_micros=amount_micros,
        status=HoldStatus.ACTIVE,
        created_at=now,
        expires_at=expires_at,
    )
    hold._state.adding = False
    return hold


@cache
def _settle_sql() -> str:
    record_columns = ", ".join(
        connection.ops.quote_name(str(field.column)) for field in _usage_record_fields()
    )
    values = ", ".join(["%s"] * len(_usage_record_fields()))
    hold, account, entry = _table(CreditHold), _table(CreditAccount), _table(LedgerEntry)
    return f"""
WITH closed AS (
    UPDATE {hold} SET status = %s, closed_at = %s
    WHERE id = %s AND status = %s
    RETURNING amount_micros
), record AS (
    INSERT INTO {_table(UsageRecord)} ({record_columns})
    SELECT {values} WHERE EXISTS (SELECT 1 FROM closed)
    RETURNING id
), debit AS (
    INSERT INTO {entry} (organization_id, kind, amount_micros, external_id, usage_record_id,
                         description, created_at)
    SELECT %s, %s, %s, '', record.id, '', %s FROM record WHERE %s > 0
), moved AS (
    UPDATE {account}
    SET balance_micros = balance_micros - %s,
        held_micros = held_micros - (SELECT amount_micros FROM closed)
    WHERE organization_id = %s AND EXISTS (SELECT 1 FROM closed)
)
SELECT id FROM record"""


def settle_without_limits(
    *, hold: CreditHold, record_values: dict[str, Any], charged_micros: int, now: datetime
) -> UsageRecord | None:
    """Close the active hold `hold` (counted against no spend limit), record the call and debit
    `charged_micros`, in one statement. None, with nothing written, when the hold was no longer
    active (the caller takes the full path: a stale hold's call is still charged). A second
    settlement of the same request raises IntegrityError (the record's unique request id), as
    the ORM path does."""
    row = _usage_record_row({**record_values, "cost_micros": charged_micros})
    organization_id = hold.organization_id
    params = [
        HoldStatus.SETTLED.value, now, hold.pk, HoldStatus.ACTIVE.value,
        *(field.get_db_prep_save(row[field.attname], connection)
          for field in _usage_record_fields()),
        organization_id, EntryKind.USAGE.value, -charged_micros, row["created_at"],
        charged_micros,
        charged_micros, organization_id,
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_settle_sql(), params)
        inserted = cursor.fetchone()
    if inserted is None:
        return None
    record = UsageRecord(id=inserted[0], **row)
    record._state.adding = False
    return record
