"""Usage buckets and costs against a known set of settled calls: to the token, to the µ$."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.selectors import personal_organization_for
from apps.billing.models import EntryKind, LedgerEntry
from apps.keys.services import api_key_create
from tests.admin_api.calls import DAY, NEXT_DAY, Call, known_calls, settle
from tests.admin_api.conftest import error_of
from tests.billing.helpers import account, hold_for, set_balance

pytestmark = pytest.mark.django_db

START = int(DAY.timestamp())
TWO_DAYS = {"start_time": START, "end_time": int(NEXT_DAY.timestamp()) + 86400}


@pytest.fixture
def keys(organization, owner):  # type: ignore[no-untyped-def]
    key_a = api_key_create(organization=organization, created_by=owner, name="a")[0]
    key_b = api_key_create(organization=organization, created_by=owner, name="b")[0]
    set_balance(organization, 10_000_000)
    for call in known_calls(key_a, key_b):
        settle(organization, call)
    return key_a, key_b


@pytest.fixture
def outsiders_call(outsider):  # type: ignore[no-untyped-def]
    organization = personal_organization_for(user=outsider)
    settle(organization, Call(DAY, None, "m-chat", 9, 9, 99))


def _tokens(result: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        result["input_tokens"], result["input_cached_tokens"], result["output_tokens"],
        result["num_model_requests"],
    )  # fmt: skip


def _micros(result: dict[str, Any]) -> int:
    assert result["amount"]["currency"] == "usd"
    return int(Decimal(str(result["amount"]["value"])) * 1_000_000)


def test_daily_completions_usage_is_exact(as_owner, keys, outsiders_call):  # type: ignore[no-untyped-def]
    body = as_owner.get("usage/completions", **TWO_DAYS).json()
    assert (body["object"], body["has_more"], body["next_page"]) == ("page", False, None)
    assert [(b["start_time"], b["end_time"]) for b in body["data"]] == [
        (START, START + 86400), (START + 86400, START + 2 * 86400),
    ]  # fmt: skip
    first, second = (bucket["results"] for bucket in body["data"])
    assert [_tokens(result) for result in first] == [(157, 60, 28, 4)]
    assert [_tokens(result) for result in second] == [(1000, 0, 1, 1)]
    assert first[0]["object"] == "organization.usage.completions.result"
    assert (first[0]["model"], first[0]["api_key_id"], first[0]["user_id"]) == (None, None, None)


def test_usage_grouped_by_model_and_key(as_owner, keys):  # type: ignore[no-untyped-def]
    key_a, key_b = keys
    body = as_owner.get("usage/completions", group_by=["model", "api_key_id"], **TWO_DAYS).json()
    first = body["data"][0]["results"]
    assert {(r["model"], r["api_key_id"]): _tokens(r) for r in first} == {
        ("m-chat", f"key_{key_a.pk}"): (150, 60, 25, 2),
        ("m-chat", None): (0, 0, 0, 1),
        ("m-other", f"key_{key_b.pk}"): (7, 0, 3, 1),
    }


def test_usage_grouped_by_user(as_owner, keys):  # type: ignore[no-untyped-def]
    body = as_owner.get("usage/completions", group_by="user", **TWO_DAYS).json()
    first = body["data"][0]["results"]
    assert {r["user_id"]: _tokens(r) for r in first} == {
        "alice": (100, 60, 20, 1), "bob": (50, 0, 5, 1), None: (7, 0, 3, 2),
    }  # fmt: skip


def test_usage_filters_by_model_and_by_key(as_owner, keys):  # type: ignore[no-untyped-def]
    _, key_b = keys
    by_model = as_owner.get("usage/completions", models="m-other", **TWO_DAYS).json()
    assert [[_tokens(r) for r in b["results"]] for b in by_model["data"]] == [[(7, 0, 3, 1)], []]
    by_key = as_owner.get("usage/completions", api_key_ids=f"key_{key_b.pk}", **TWO_DAYS).json()
    assert [[_tokens(r) for r in b["results"]] for b in by_key["data"]] == [
        [(7, 0, 3, 1)], [(1000, 0, 1, 1)],
    ]  # fmt: skip


def test_hourly_buckets_walked_page_by_page_to_the_end(as_owner, keys):  # type: ignore[no-untyped-def]
    query = {"start_time": START + 10 * 3600, "end_time": START + 12 * 3600 + 1,
             "bucket_width": "1h", "limit": 1}  # fmt: skip
    seen = []
    page = None
    while True:
        extra = {"page": page} if page else {}
        body = as_owner.get("usage/completions", **query, **extra).json()
        seen += [(b["start_time"], [_tokens(r) for r in b["results"]]) for b in body["data"]]
        assert body["has_more"] is (body["next_page"] is not None)
        if not body["has_more"]:
            break
        page = body["next_page"]
    assert seen == [
        (START + 10 * 3600, [(150, 60, 25, 2)]),
        (START + 11 * 3600, [(7, 0, 3, 1)]),
        (START + 12 * 3600, []),  # only the embedding call, which is not a completion
    ]


def test_embeddings_usage(as_owner, keys):  # type: ignore[no-untyped-def]
    body = as_owner.get("usage/embeddings", group_by="model", **TWO_DAYS).json()
    assert body["data"][0]["results"] == [{
        "object": "organization.usage.embeddings.result", "input_tokens": 42,
        "num_model_requests": 1, "model": "m-embed", "api_key_id": None, "user_id": None,
        "project_id": None,
    }]  # fmt: skip


def test_daily_costs_equal_the_ledgers_usage_debits(as_owner, organization, keys):  # type: ignore[no-untyped-def]
    body = as_owner.get("costs", **TWO_DAYS).json()
    totals = [[_micros(r) for r in bucket["results"]] for bucket in body["data"]]
    assert totals == [[2_063], [999_999]]
    debits = LedgerEntry.objects.filter(organization=organization, kind=EntryKind.USAGE)
    assert -sum(debits.values_list("amount_micros", flat=True)) == 2_063 + 999_999
    assert body["data"][0]["results"][0]["object"] == "organization.costs.result"


def test_costs_by_line_item_and_by_key(as_owner, keys):  # type: ignore[no-untyped-def]
    key_a, key_b = keys
    by_model = as_owner.get("costs", group_by="line_item", **TWO_DAYS).json()
    assert {r["line_item"]: _micros(r) for r in by_model["data"][0]["results"]} == {
        "m-chat": 2_011, "m-embed": 42, "m-other": 10,
    }  # fmt: skip
    by_key = as_owner.get("costs", group_by="api_key_id", **TWO_DAYS).json()
    assert {r["api_key_id"]: _micros(r) for r in by_key["data"][0]["results"]} == {
        f"key_{key_a.pk}": 2_053, f"key_{key_b.pk}": 10,
    }  # fmt: skip


def test_costs_pages_walk_to_the_end(as_owner, keys):  # type: ignore[no-untyped-def]
    totals, page = [], None
    while True:
        body = as_owner.get("costs", limit=1, **TWO_DAYS, **({"page": page} if page else {}))
        body = body.json()
        totals += [sum(_micros(r) for r in b["results"]) for b in body["data"]]
        if not body["has_more"]:
            break
        page = body["next_page"]
    assert totals == [2_063, 999_999]


def test_member_reads_the_same_figures_and_outsider_none_of_them(as_member, as_outsider, keys):  # type: ignore[no-untyped-def]
    member = as_member.get("costs", **TWO_DAYS).json()
    assert [[_micros(r) for r in b["results"]] for b in member["data"]] == [[2_063], [999_999]]
    outsider = as_outsider.get("costs", **TWO_DAYS).json()
    assert [b["results"] for b in outsider["data"]] == [[], []]
    usage = as_outsider.get("usage/completions", **TWO_DAYS).json()
    assert [b["results"] for b in usage["data"]] == [[], []]


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        ("usage/completions", {"bucket_width": "1w"}, "bucket_width"),
        ("usage/completions", {"end_time": START}, "end_time"),
        ("usage/completions", {"limit": 32}, "limit"),
        ("usage/completions", {"page": "garbage"}, "page"),
        ("usage/completions", {"group_by": "project_id"}, "group_by"),
        ("usage/completions", {"api_key_ids": "12"}, "api_key_ids"),
        ("costs", {"bucket_width": "1h"}, "bucket_width"),
        ("costs", {"limit": 181}, "limit"),
        ("costs", {"start_time": None}, "start_time"),
    ],
)
def test_bad_bucket_queries_are_400s_naming_the_parameter(as_owner, path, query, param):  # type: ignore[no-untyped-def]
    full = {
        key: value for key, value in {"start_time": START, **query}.items() if value is not None
    }
    response = as_owner.get(path, **full)
    assert response.status_code == 400
    assert error_of(response)["param"] == param


def test_credits_show_balance_holds_and_grants_to_managers_only(as_owner, as_member, organization):  # type: ignore[no-untyped-def]
    set_balance(organization, 3_000_000)
    hold = hold_for(organization, 250_000)
    body = as_owner.get("credits").json()
    assert body["balance"] == {"value": 3.0, "currency": "usd"}
    assert body["held"] == {"value": 0.25, "currency": "usd"}
    assert body["available"] == {"value": 2.75, "currency": "usd"}
    assert [(h["id"], h["amount"]["value"]) for h in body["active_holds"]] == [
        (hold.request_id, 0.25)
    ]
    assert [(g["kind"], _micros(g)) for g in body["grants"]] == [
        ("adjustment", 3_000_000 - 5_000_000), ("trial_grant", 5_000_000),
    ]  # fmt: skip
    assert account(organization).balance_micros == 3_000_000
    member = as_member.get("credits").json()
    assert member["balance"] == body["balance"]
    assert (member["active_holds"], member["grants"]) == (None, None)
