"""A page on another origin streams a chat completion from Plugsky with `fetch`, reading the
server-sent events off a ReadableStream and showing the text as it comes; the call is billed."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from apps.billing.models import LedgerEntry
from apps.billing.pricing import call_cost_micros
from apps.catalog.selectors import catalog_model
from apps.usage.models import UsageRecord
from tests.gateway.conftest import live_key, live_server_url

__all__ = ["live_key", "live_server_url"]

pytestmark = pytest.mark.xdist_group("browser")

# The page knows nothing of Plugsky but its URL and a key, as a customer's page would.
_PAGE = """<!doctype html><meta charset="utf-8"><title>Ask</title>
<p id="answer"></p><p id="status">idle</p>
<script>
function eventsOf(buffer) {
  const events = buffer.split("\\n\\n");
  return {complete: events.slice(0, -1), rest: events.at(-1)};
}

function show(event, seen) {
  const data = event.replace(/^data: /, "");
  if (data === "[DONE]") { seen.done = true; return; }
  const chunk = JSON.parse(data);
  if (chunk.usage) seen.usage = chunk.usage;
  const text = chunk.choices[0]?.delta?.content;
  if (text) document.getElementById("answer").textContent += text;
}

async function ask(base, key) {
  document.getElementById("status").textContent = "asking";
  const response = await fetch(base + "/v1/chat/completions", {
    method: "POST",
    headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    body: JSON.stringify({model: "plugsky-nano", stream: true, max_tokens: 32, temperature: 0,
                          stream_options: {include_usage: true},
                          messages: [{role: "user", content: "What is 2+2?"}]}),
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const seen = {done: false, usage: null, lengths: []};
  let buffer = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    const {complete, rest} = eventsOf(buffer + value);
    buffer = rest;
    complete.forEach((event) => show(event, seen));
    seen.lengths.push(document.getElementById("answer").textContent.length);
  }
  document.getElementById("status").textContent = seen.done ? "done" : "cut short";
  return {status: response.status, requestId: response.headers.get("x-request-id"),
          origin: location.origin, usage: seen.usage, lengths: seen.lengths, rest: buffer};
}
</script>"""


@pytest.fixture
def page_url(tmp_path: Path) -> Iterator[str]:
    """The page on its own origin: a static file server on another loopback port."""
    (tmp_path / "ask.html").write_text(_PAGE)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test's output to the test

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ask.html"
    finally:
        server.shutdown()
        server.server_close()


def _ask(page: Page, *, page_url: str, base_url: str, key: str) -> dict[str, Any]:
    page.goto(page_url)
    result: dict[str, Any] = page.evaluate("([base, key]) => ask(base, key)", [base_url, key])
    return result


def test_a_page_on_another_origin_streams_the_answer_and_is_billed(
    browser_page: Page, page_url: str, live_server_url: str, live_key: Any
) -> None:
    organization, raw_key = live_key
    result = _ask(browser_page, page_url=page_url, base_url=live_server_url, key=raw_key)
    assert result["origin"] != live_server_url  # a cross-origin call, answered with CORS
    assert result["status"] == 200
    assert result["rest"] == ""  # every event was complete
    expect(browser_page.locator("#status")).to_have_text("done")
    answer = browser_page.locator("#answer").text_content()
    assert answer is not None and answer.strip()
    # Shown as it streamed: the text grew over several reads, up to all of it.
    lengths = result["lengths"]
    assert lengths == sorted(lengths) and len(set(lengths)) > 1 and lengths[-1] == len(answer)
    _assert_billed(result, organization=organization)


def _assert_billed(result: dict[str, Any], *, organization: Any) -> None:
    """The page's call has its UsageRecord, with the usage the page saw, and its exact debit."""
    record = UsageRecord.objects.get(request_id=result["requestId"])
    assert (record.organization_id, record.model, record.status) == (
        organization.pk, "plugsky-nano", 200,
    )  # fmt: skip
    assert record.is_stream and not record.is_client_disconnect
    assert result["usage"]["prompt_tokens"] == record.prompt_tokens > 0
    assert result["usage"]["completion_tokens"] == record.completion_tokens > 0
    entry = catalog_model("plugsky-nano")
    assert entry is not None
    expected = call_cost_micros(
        entry=entry,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
    )
    assert record.cost_micros == expected > 0
    debit = LedgerEntry.objects.get(usage_record=record)
    assert (debit.kind, debit.amount_micros) == ("usage", -expected)
