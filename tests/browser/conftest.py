"""A real browser against a real server: Daphne and a Celery worker on the test database.

Chromium is Debian's package (`.ci/run` installs it when it is missing); Playwright only drives it,
it never downloads a browser of its own.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugsky_site.embedded import REPO_ROOT
from tests.live import run_server
from tests.worker import run_worker

CHROMIUM = os.environ.get("PLUGSKY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = REPO_ROOT / "tests" / "artifacts" / "screenshots"


@dataclass
class Mailbox:
    """The file-based email backend's folder: every email the server sent."""

    path: Path

    def messages(self) -> list[email.message.Message]:
        found = []
        for file in sorted(self.path.glob("*.log")):
            for chunk in file.read_bytes().split(b"-" * 79):
                if chunk.strip():
                    found.append(email.message_from_bytes(chunk.strip()))
        return found

    def link_to(self, recipient: str, pattern: str, timeout_s: float = 10) -> str:
        """The first link matching `pattern` in an email to `recipient` (waits for it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.messages():
                if message["To"] != recipient:
                    continue
                body = message.get_payload(decode=True)
                text = body.decode() if isinstance(body, bytes) else str(message.get_payload())
                match = re.search(pattern, text)
                if match:
                    return match.group(0)
            time.sleep(0.2)
        raise AssertionError(f"no email to {recipient} with a link like {pattern}")


@dataclass
class Site:
    url: str
    mailbox: Mailbox


@pytest.fixture
def site(transactional_db, tmp_path) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """Daphne and a Celery worker sharing the test database, Redis and a mailbox folder."""
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    env = {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail_dir),
        # Top-ups appear configured; nothing in the journey ever reaches Stripe.
        "STRIPE_SECRET_KEY": "sk_test_browser_journey_never_called",
    }
    worker = run_worker(env, name="browser")
    next(worker)
    server = run_server(env)
    try:
        url = next(server)
        yield Site(url=url, mailbox=Mailbox(mail_dir))
    finally:
        server.close()
        worker.close()


@pytest.fixture
def browser_page(monkeypatch):  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM reads are
    # plain synchronous calls between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(30_000)
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()


def screenshot(page, name: str, *, full_page: bool = True) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
