"""CORS on /v1 against the live server, and a page on another origin in a real Chromium."""

import http.server
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.xdist_group("live")

PAGE_ORIGIN = "http://page.example"
REQUESTED = "authorization, content-type, x-api-key, anthropic-version, openai-beta, x-stainless-os"
EXPOSED = {
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "x-plugsky-cost",
    "retry-after",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
}


def _preflight(base_url: str, path: str) -> httpx.Response:
    headers = {
        "Origin": PAGE_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": REQUESTED,
    }
    return httpx.options(f"{base_url}{path}", headers=headers, timeout=10)


def _assert_readable_cross_origin(response: httpx.Response) -> None:
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = {
        name.strip() for name in response.headers["access-control-expose-headers"].split(",")
    }
    assert exposed == EXPOSED
    assert "access-control-allow-credentials" not in response.headers


def test_a_preflight_needs_no_key_and_echoes_the_requested_headers(live_server_url):
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/no/such/path"):
        response = _preflight(live_server_url, path)
        assert response.status_code == 204, path
        assert response.content == b""
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-allow-methods"] == "GET, POST, DELETE, OPTIONS"
        assert response.headers["access-control-allow-headers"] == REQUESTED
        assert response.headers["access-control-max-age"] == "7200"
        assert "access-control-allow-credentials" not in response.headers
        assert not any(name.startswith("x-ratelimit") for name in response.headers)


def test_a_header_name_that_is_not_a_token_is_not_echoed(live_server_url):
    headers = {
        "Origin": PAGE_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-good, bad name, x-stainless-arch",
    }
    response = httpx.options(f"{live_server_url}/v1/models", headers=headers, timeout=10)
    assert response.headers["access-control-allow-headers"] == "x-good, x-stainless-arch"


def test_preflights_do_not_count_against_the_rate_limit(api, live_server_url):
    if time.time() % 60 > 50:  # stay inside one rate-limit window
        time.sleep(61 - time.time() % 60)
    before = int(api.get("/models").headers["x-ratelimit-remaining-requests"])
    for _ in range(3):
        assert _preflight(live_server_url, "/v1/models").status_code == 204
    after = int(api.get("/models").headers["x-ratelimit-remaining-requests"])
    assert after == before - 1


def test_answers_errors_and_streams_are_readable_cross_origin(api, live_server_url):
    origin = {"Origin": PAGE_ORIGIN}
    listed = api.get("/models", headers=origin)
    assert listed.status_code == 200
    _assert_readable_cross_origin(listed)
    unauthorized = httpx.get(f"{live_server_url}/v1/models", headers=origin, timeout=10)
    assert unauthorized.status_code == 401
    _assert_readable_cross_origin(unauthorized)
    unknown = api.get("/no/such/path", headers=origin)
    assert unknown.status_code == 404
    _assert_readable_cross_origin(unknown)
    anthropic_error = api.post("/messages", json={"model": "plugsky-nano"}, headers=origin)
    assert anthropic_error.status_code == 400
    _assert_readable_cross_origin(anthropic_error)
    body = {"model": "plugsky-nano", "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4, "stream": True}  # fmt: skip
    with api.stream("POST", "/chat/completions", json=body, headers=origin) as streamed:
        assert streamed.status_code == 200
        _assert_readable_cross_origin(streamed)
        assert streamed.read().endswith(b"data: [DONE]\n\n")


def test_the_dashboard_answers_no_cors(live_server_url):
    response = httpx.get(f"{live_server_url}/healthz", headers={"Origin": PAGE_ORIGIN})
    assert "access-control-allow-origin" not in response.headers


_PAGE = """<!doctype html><title>elsewhere</title><script>
async function streamChat(base, key) {
  const response = await fetch(base + "/v1/chat/completions", {
    method: "POST",
    headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json",
              "x-stainless-lang": "js"},
    body: JSON.stringify({model: "plugsky-nano", stream: true, max_tokens: 12,
                          messages: [{role: "user", content: "Say hello."}]}),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let raw = "", reads = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    reads += 1;
    raw += decoder.decode(value, {stream: true});
  }
  return {status: response.status, requestId: response.headers.get("x-request-id"),
          remaining: response.headers.get("x-ratelimit-remaining-requests"), raw, reads};
}
</script>"""


@pytest.fixture
def page_origin(tmp_path: Path):
    """Another origin: a static page on its own loopback port."""
    (tmp_path / "index.html").write_text(_PAGE)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_streams_a_chat_completion(
    live_server_url, live_key, page_origin, monkeypatch
):
    from playwright.sync_api import sync_playwright

    from apps.usage.models import UsageRecord

    assert Path(CHROMIUM).exists(), f"Chromium is missing at {CHROMIUM}"
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    _, raw_key = live_key
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{page_origin}/index.html")
            result = page.evaluate(
                "([base, key]) => streamChat(base, key)", [live_server_url, raw_key]
            )
        finally:
            browser.close()
    assert result["status"] == 200
    assert result["requestId"].startswith("req_")
    assert int(result["remaining"]) >= 0
    assert result["raw"].startswith('data: {"id":"chatcmpl-')
    assert result["raw"].endswith("data: [DONE]\n\n")
    record = UsageRecord.objects.get(request_id=result["requestId"])
    assert record.is_stream and record.status == 200 and record.completion_tokens > 0
