from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from tests.factories import make_member, make_user
from tests.live import shared_engine_url


@pytest.fixture(scope="session", autouse=True)
def engine_url() -> Iterator[str]:
    """The models run in an engine process, as in production: one per test process (xdist
    worker), which this process's own gateway calls and every live server shares."""
    from django.conf import settings

    url = shared_engine_url()
    settings.PLUGSKY_ENGINE_URL = url
    yield url


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Each test starts with this worker's Redis database empty."""
    cache.clear()
    yield


@pytest.fixture
def owner(db):  # type: ignore[no-untyped-def]
    return make_user("owner@example.com")


@pytest.fixture
def organization(owner):  # type: ignore[no-untyped-def]
    from apps.accounts.selectors import personal_organization_for

    return personal_organization_for(user=owner)


@pytest.fixture
def member(organization):  # type: ignore[no-untyped-def]
    return make_member(organization, "member@example.com")


@pytest.fixture
def outsider(db):  # type: ignore[no-untyped-def]
    return make_user("outsider@example.com")


@pytest.fixture
def api_key(organization, owner):  # type: ignore[no-untyped-def]
    """(APIKey row, the full key) for the owner's organization."""
    from apps.keys.services import api_key_create

    return api_key_create(organization=organization, created_by=owner, name="test key")
