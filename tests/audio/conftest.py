from __future__ import annotations

import pytest

from tests.live import run_server


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    yield from run_server()


@pytest.fixture
def live_key(transactional_db):  # type: ignore[no-untyped-def]
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create
    from apps.onboarding.services import user_create

    user = user_create(email="audio@example.com", password="correct horse battery staple")
    organization = personal_organization_for(user=user)
    _, raw_key = api_key_create(organization=organization, created_by=user, name="audio")
    return organization, raw_key


@pytest.fixture
def client(live_server_url, live_key):  # type: ignore[no-untyped-def]
    import openai

    _, raw_key = live_key
    return openai.OpenAI(
        base_url=f"{live_server_url}/v1", api_key=raw_key, max_retries=0, timeout=120
    )
