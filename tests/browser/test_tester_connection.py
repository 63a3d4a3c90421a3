"""The tester's socket in a real browser: a refused connection is explained, not retried."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.live import run_server

pytestmark = pytest.mark.xdist_group("browser")


@pytest.fixture
def server(transactional_db) -> Iterator[Iterator[str]]:  # type: ignore[no-untyped-def]
    """A Daphne of this test's own, which the test may stop (close the generator)."""
    running = run_server()
    yield running
    running.close()


def _open_tester(page: Page, base_url: str, owner) -> None:  # type: ignore[no-untyped-def]
    from apps.accounts.selectors import personal_organization_for

    client = Client()
    client.force_login(owner)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base_url}]
    )
    organization = personal_organization_for(user=owner)
    page.goto(f"{base_url}/dashboard/{organization.pk}/tester/")


def _attempts(page: Page) -> list[str]:
    opened: list[str] = []
    page.on("websocket", lambda socket: opened.append(socket.url))
    return opened


def test_a_server_that_goes_away_is_retried_a_few_times_then_explained(
    server, owner, browser_page: Page
) -> None:
    page = browser_page
    base_url = next(server)
    attempts = _attempts(page)
    _open_tester(page, base_url, owner)
    expect(page.locator("#connection")).to_contain_text("Connected")

    server.close()  # Daphne stops: every reconnection is refused from now on

    error = page.locator("#tester-error")
    expect(error).to_contain_text("could not reach the server", timeout=30_000)
    expect(page.locator("#connection")).to_contain_text("Disconnected")
    expect(page.get_by_role("button", name="Run")).to_be_disabled()
    given_up_after = len(attempts)
    assert given_up_after == 1 + 4  # the first socket, then four refused attempts
    time.sleep(3)  # longer than the last back-off: nothing more is tried
    assert len(attempts) == given_up_after
    expect(page.get_by_role("button", name="Reconnect")).to_be_visible()


def test_a_refusal_with_a_reason_is_shown_and_not_retried(
    server, owner, browser_page: Page
) -> None:
    page = browser_page
    base_url = next(server)
    refused: list[WebSocketRoute] = []

    def refuse(socket: WebSocketRoute) -> None:  # what the consumer does to an outsider
        refused.append(socket)
        socket.close(code=4403, reason="forbidden")

    page.route_web_socket("**/ws/tester/**", refuse)
    _open_tester(page, base_url, owner)

    expect(page.locator("#tester-error")).to_contain_text("no longer a member")
    expect(page.locator("#connection")).to_contain_text("Disconnected")
    time.sleep(1.5)  # past the first back-off: no second attempt
    assert len(refused) == 1
