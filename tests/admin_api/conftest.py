from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from apps.accounts.models import Membership, Role
from apps.accounts.services import membership_role_change
from apps.keys.services import admin_key_create
from apps.usage.models import UsageRecord


class AdminClient:
    """The admin API as a script sees it: JSON in and out, one key in the Authorization header."""

    def __init__(self, client: Client, key: str | None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        url = f"/v1/organization/{path}"
        if method == "get":
            return self.client.get(url, query, headers=self.headers)
        data = json.dumps(body) if body is not None else ""
        send = getattr(self.client, method)
        return send(url, data, content_type="application/json", headers=self.headers)

    def get(self, path: str, **query: Any) -> Any:
        return self.call("get", path, **query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("post", path, body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.call("delete", path)


@pytest.fixture
def owner_key(organization, owner) -> str:  # type: ignore[no-untyped-def]
    return admin_key_create(organization=organization, created_by=owner, name="ci")[1]


@pytest.fixture
def member_key(organization, owner, member) -> str:  # type: ignore[no-untyped-def]
    """The admin key of a member: made while they were an owner, then they were demoted."""
    membership = Membership.objects.get(organization=organization, user=member)
    membership_role_change(membership=membership, role=Role.OWNER, changed_by=owner)
    raw_key = admin_key_create(organization=organization, created_by=member, name="old")[1]
    membership_role_change(membership=membership, role=Role.MEMBER, changed_by=owner)
    return raw_key


@pytest.fixture
def outsider_key(outsider) -> str:  # type: ignore[no-untyped-def]
    from apps.accounts.selectors import personal_organization_for

    organization = personal_organization_for(user=outsider)
    return admin_key_create(organization=organization, created_by=outsider, name="other")[1]


@pytest.fixture
def as_owner(client, owner_key) -> AdminClient:  # type: ignore[no-untyped-def]
    return AdminClient(client, owner_key)


@pytest.fixture
def as_member(client, member_key) -> AdminClient:  # type: ignore[no-untyped-def]
    return AdminClient(client, member_key)


@pytest.fixture
def as_outsider(client, outsider_key) -> AdminClient:  # type: ignore[no-untyped-def]
    return AdminClient(client, outsider_key)


@contextmanager
def recorded_at(moment: datetime) -> Iterator[None]:
    """UsageRecords (and so their ledger debits) created inside get `moment` as created_at."""
    field = UsageRecord._meta.get_field("created_at")
    with mock.patch.object(field, "_get_default", lambda: moment):
        yield


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    from tests.live import run_server

    yield from run_server()
