"""Fixtures of the fault and abuse suite: a live server per module and committed tenants.

Each module gets its own Daphne (not the gateway tests' shared one): the RSS test must measure a
process that nothing else loads, and the fuzzer loads every model of the catalog. The per-key
rate limit is raised on these servers so that the load is refused by billing and admission
control, not by the requests-per-minute counter (which tests/gateway/test_ratelimit.py covers).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.faults.helpers import set_balance
from tests.live import run_server

SERVER_ENV = {"RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000"}

TENANT_BALANCE_MICROS = 5_000_000
_emails = itertools.count(1)


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Extra environment of the module's server (a module overrides this fixture to change it)."""
    return {}


@pytest.fixture(scope="module")
def faults_server_url(django_db_setup, django_db_blocker, server_env) -> Iterator[str]:  # type: ignore[no-untyped-def]
    yield from run_server(extra_env={**SERVER_ENV, **server_env})


@pytest.fixture
def tenant(transactional_db):  # type: ignore[no-untyped-def]
    """A committed organization with $5 of credit, and a key the live server can see:
    (organization, full key)."""
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create
    from apps.onboarding.services import user_create

    user = user_create(email=f"faults-{next(_emails)}@example.com")
    organization = personal_organization_for(user=user)
    set_balance(organization, TENANT_BALANCE_MICROS)
    _, raw_key = api_key_create(organization=organization, created_by=user, name="faults")
    return organization, raw_key
