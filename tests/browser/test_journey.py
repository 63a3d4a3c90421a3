"""The whole customer journey in a real browser, as a person would do it.

Sign up → confirm the email → see $5.00 → create a key → call the API with it → see the usage →
use the tester and watch tokens stream → revoke the key → the next API call gets a 401.
Screenshots of each main page land in tests/artifacts/screenshots/.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from apps.usage.models import UsageRecord
from tests.browser.conftest import REPO_ROOT, Site, screenshot

pytestmark = pytest.mark.xdist_group("browser")

EMAIL = "ada@example.com"
PASSWORD = "a long and unusual passphrase 42"


def _chat(site: Site, key: str, content: str = "Say hi.") -> httpx.Response:
    return httpx.post(
        f"{site.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "plugsky-nano",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 12,
        },
        timeout=120,
    )


def _public_pages(page: Page, site: Site) -> None:
    page.goto(site.url + "/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("behind the API you already use")
    expect(page.locator("#models")).to_contain_text("plugsky-nano")
    screenshot(page, "01-landing")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pricing").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("per-token pricing")
    screenshot(page, "02-pricing")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Docs").click()
    expect(page.locator("#quickstart")).to_be_visible()
    page.get_by_role("tab", name="Python").first.click()
    expect(page.locator("#code-qs-python")).to_contain_text(f'base_url="{site.url}/v1"')
    screenshot(page, "03-docs", full_page=False)


def _sign_up_and_verify(page: Page, site: Site) -> None:
    page.goto(site.url + "/")
    page.get_by_role("link", name="Start free").first.click()
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    screenshot(page, "04-signup")
    page.get_by_label("Your name").fill("Ada Lovelace")
    page.get_by_label("Work email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Confirm your email to get $5.00")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("$0.00")

    link = site.mailbox.link_to(EMAIL, r"http://[^\s]+/accounts/verify/[^\s]+/")
    page.goto(link)
    expect(page.get_by_text("your trial credit has been added")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("$5.00")
    screenshot(page, "05-dashboard")


def _create_key(page: Page) -> str:
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("Journey key")
    page.get_by_label("Monthly spend limit (USD)").fill("2.50")
    page.get_by_role("button", name="Create key").click()
    raw_key = page.get_by_test_id("new-key").input_value()
    assert re.fullmatch(r"sk-live-[A-Za-z0-9_-]{43}", raw_key)
    page.get_by_role("button", name="Copy", exact=True).first.click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    screenshot(page, "06-keys")
    page.reload()  # the key is never shown again
    expect(page.locator("body")).not_to_contain_text(raw_key)
    expect(page.get_by_role("row", name=re.compile("Journey key"))).to_contain_text("sk-live-…")
    return raw_key


def _see_usage(page: Page, site: Site, raw_key: str) -> None:
    response = _chat(site, raw_key)
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Usage").click()
    row = page.locator(f'tr[data-request-id="{request_id}"]')
    expect(row).to_contain_text("plugsky-nano")
    expect(row).to_contain_text("Journey key")
    expect(page.locator("#chart-cost")).to_be_visible()
    screenshot(page, "07-usage")


def _use_the_tester(page: Page) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Tester").click()
    expect(page.locator("#connection")).to_contain_text("Connected")
    page.get_by_role("button", name="+ Compare another model").click()
    page.get_by_label("Max tokens").fill("40")
    page.get_by_test_id("message-input").first.fill("Write one sentence about the sea.")
    # Record, in the page itself, every length the first answer goes through as it renders.
    page.evaluate(
        """() => {
            window.seenLengths = [];
            new MutationObserver(() => {
                const output = document.querySelector('[data-testid="column-output"]');
                if (output) window.seenLengths.push(output.textContent.length);
            }).observe(document.getElementById("columns"),
                       {subtree: true, childList: true, characterData: true});
        }"""
    )
    page.get_by_role("button", name=re.compile("^Run")).click()

    outputs = page.get_by_test_id("column-output")
    expect(outputs).to_have_count(2)
    expect(page.get_by_test_id("column-stats").first).to_contain_text("Cost", timeout=90_000)
    lengths = page.evaluate("window.seenLengths")
    final = len(outputs.first.text_content() or "")
    partial = {length for length in lengths if 0 < length < final}
    assert len(partial) >= 3, f"the answer did not stream token by token: {lengths}"
    for stats in page.get_by_test_id("column-stats").all():
        expect(stats).to_contain_text("Cost", timeout=90_000)
        expect(stats).to_contain_text("Latency")
    screenshot(page, "08-tester")

    page.get_by_role("button", name="View code").click()
    expect(page.locator("#code-curl")).to_contain_text("/v1/chat/completions")
    page.get_by_role("tab", name="Python").click()
    expect(page.locator("#code-python")).to_contain_text("stream=True")
    screenshot(page, "09-tester-code", full_page=False)
    page.get_by_role("button", name="Close").click()
    assert UsageRecord.objects.filter(is_tester=True, api_key__isnull=True).count() == 2


def _billing_and_members(page: Page) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Billing").click()
    expect(page.get_by_role("button", name="Add $25.00")).to_be_visible()
    expect(page.get_by_text("Trial credit", exact=True).first).to_be_visible()
    screenshot(page, "10-billing")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Members").click()
    page.get_by_label("Email address").fill("grace@example.com")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation sent to grace@example.com")).to_be_visible()
    screenshot(page, "11-organization")


def _revoke(page: Page, site: Site, raw_key: str) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="API keys").click()
    page.get_by_role("row", name=re.compile("Journey key")).get_by_role(
        "link", name="Revoke"
    ).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Revoke “Journey key”?")
    dialog.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text("was revoked")).to_be_visible()
    response = _chat(site, raw_key)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def _on_a_phone(page: Page, site: Site) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sections = page.get_by_role("navigation", name="Sections")
    expect(sections).to_be_hidden()  # behind the menu button on a narrow screen
    page.get_by_role("button", name="Menu").click()
    sections.get_by_role("link", name="Overview").click()
    expect(page.get_by_test_id("balance")).to_be_visible()
    screenshot(page, "12-mobile-dashboard", full_page=False)
    page.goto(site.url + "/")
    screenshot(page, "13-mobile-landing", full_page=False)


def test_the_whole_customer_journey(site: Site, browser_page: Page) -> None:
    page = browser_page
    _public_pages(page, site)
    _sign_up_and_verify(page, site)
    raw_key = _create_key(page)
    _see_usage(page, site, raw_key)
    _use_the_tester(page)
    _billing_and_members(page)
    _revoke(page, site, raw_key)
    _on_a_phone(page, site)

    # No key material in what the servers logged.
    for log in (REPO_ROOT / "tests" / "artifacts").glob("*.log"):
        assert raw_key not in log.read_text(errors="replace"), log.name
