"""Images in chat: read by plugsky-vision, refused by text-only models, fetched safely."""

import base64

import pytest

from apps.usage.models import UsageRecord
from tests.openapi import validate_response, validate_schema
from tests.providers.test_vision_reader import invoice_png
from tests.sse import parse_events, streamed_text

pytestmark = pytest.mark.xdist_group("live")

INVOICE_URL = "data:image/png;base64," + base64.b64encode(invoice_png()).decode()
QUESTION = "What is the total amount on this invoice? Answer with the amount only."


def _ask(image_url, *, model="plugsky-vision", detail="auto", text=QUESTION):
    return {
        "model": model,
        "temperature": 0,
        "max_tokens": 20,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": image_url, "detail": detail}},
                ],
            }
        ],
    }


def test_the_image_reaches_the_vision_model(api):
    request = _ask(INVOICE_URL)
    response = api.post("/chat/completions", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("post", "/chat/completions", 200, body, request)
    assert "42.50" in body["choices"][0]["message"]["content"]
    # The reader's description is part of the prompt, and billed as such.
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert record.prompt_tokens == body["usage"]["prompt_tokens"] > 60


def test_the_model_without_the_image_does_not_know(api):
    text_only = {**_ask(INVOICE_URL), "messages": [{"role": "user", "content": QUESTION}]}
    content = api.post("/chat/completions", json=text_only).json()["choices"][0]["message"]
    assert "42.50" not in content["content"]


def test_streaming_with_an_image(api):
    request = {**_ask(INVOICE_URL, detail="low"), "stream": True}
    with api.stream("POST", "/chat/completions", json=request) as response:
        assert response.status_code == 200
        chunks, done = parse_events(response.read().decode())
    assert done
    for chunk in chunks:
        validate_schema("CreateChatCompletionStreamResponse", chunk)
    assert "42.50" in streamed_text(chunks)


def test_the_vision_model_says_what_it_can_and_cannot_see(api):
    model = api.get("/models/plugsky-vision").json()
    assert "vision" in model["capabilities"]
    assert "CAN read printed text" in model["description"]
    assert "CANNOT recognise objects" in model["description"]


def _error(response):
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


def test_images_to_a_model_without_vision_are_refused(api):
    error = _error(api.post("/chat/completions", json=_ask(INVOICE_URL, model="plugsky-mini")))
    assert error["code"] == "image_not_supported"
    assert error["param"] == "messages[0].content[1]"


def test_a_loopback_image_url_is_refused(api, live_server_url):
    error = _error(api.post("/chat/completions", json=_ask(f"{live_server_url}/healthz")))
    assert error["code"] == "invalid_image_url"
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "private or reserved address" in error["message"]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/a.png", "http or https"),
        ("http://10.0.0.1/a.png", "private or reserved"),
        ("http://169.254.169.254/latest/meta-data", "private or reserved"),
        ("http://[::1]/a.png", "private or reserved"),
        ("data:text/html;base64,PGI+aGk8L2I+", "text/html"),
        ("data:image/png;base64,!!!", "not valid base64"),
    ],
)
def test_bad_image_urls_get_a_clear_400(api, url, fragment):
    error = _error(api.post("/chat/completions", json=_ask(url)))
    assert fragment in error["message"]


def test_an_undecodable_image_gets_a_400(api):
    url = "data:image/png;base64," + base64.b64encode(b"definitely not a png").decode()
    error = _error(api.post("/chat/completions", json=_ask(url)))
    assert error["code"] == "invalid_image"
    assert "could not be decoded" in error["message"]


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": INVOICE_URL}}]},
         "messages[0].content[0]"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
         "messages[0].content[0].type"),
        ({"role": "user", "content": [{"type": "image_url",
                                       "image_url": {"url": INVOICE_URL, "detail": "ultra"}}]},
         "messages[0].content[0].image_url.detail"),
    ],
)  # fmt: skip
def test_misplaced_or_unknown_parts_are_refused(api, message, param):
    request = {"model": "plugsky-vision", "messages": [message]}
    assert _error(api.post("/chat/completions", json=request))["param"] == param


# --- http(s) image URLs, through a server allowed to reach the tests' image server ----------


@pytest.fixture(scope="module")
def image_host():
    import http.server
    import threading
    import time

    invoice = invoice_png()
    routes = {
        "/invoice.png": ({"Content-Type": "image/png"}, invoice, 0.0, 200),
        "/to-private": ({"Location": "http://192.168.0.10/invoice.png"}, b"", 0.0, 302),
        "/huge.png": ({"Content-Type": "image/png"}, b"\x89PNG" + b"0" * 300_000, 0.0, 200),
        "/slow.png": ({"Content-Type": "image/png"}, invoice[:64], 0.1, 200),
        "/page": ({"Content-Type": "text/html"}, b"<p>hi</p>", 0.0, 200),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            headers, body, delay_s, status = routes[self.path]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            for start in range(0, len(body), 1 if delay_s else len(body) or 1):
                self.wfile.write(body[start : start + (1 if delay_s else len(body))])
                time.sleep(delay_s)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fetching_api_url(django_db_setup, django_db_blocker):
    from tests.live import run_server

    yield from run_server({"DJANGO_SETTINGS_MODULE": "tests.gateway.image_fetch_settings"})


@pytest.fixture
def fetching_api(fetching_api_url, live_key):
    import httpx

    headers = {"Authorization": f"Bearer {live_key[1]}"}
    with httpx.Client(base_url=f"{fetching_api_url}/v1", headers=headers, timeout=120) as client:
        yield client


def test_an_http_image_url_reaches_the_model(fetching_api, image_host):
    response = fetching_api.post("/chat/completions", json=_ask(f"{image_host}/invoice.png"))
    assert response.status_code == 200, response.text
    assert "42.50" in response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/to-private", "private or reserved"),
        ("/huge.png", "larger than the limit of 200000 bytes"),
        ("/slow.png", "Timed out"),
        ("/page", "text/html"),
    ],
)
def test_http_image_failures_through_the_api(fetching_api, image_host, path, fragment):
    error = _error(fetching_api.post("/chat/completions", json=_ask(f"{image_host}{path}")))
    assert error["code"] == "invalid_image_url"
    assert fragment in error["message"]
