"""/v1 through the ASGI application as the server runs it (plugsky_site.v1_handler): the site's
checks it keeps, without the site's middleware. Django's test client builds its own handler
from settings.MIDDLEWARE, so these drive the application itself."""

from __future__ import annotations

import json

import pytest

from tests.asgi_client import asgi_get
from tests.site.test_security import BAD_REQUEST


async def test_a_disallowed_host_is_a_json_400(settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    status, headers, body = await asgi_get("/v1/models", b"")
    assert status == 400
    assert headers[b"Content-Type"] == b"application/json"
    assert json.loads(body) == BAD_REQUEST


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/models"])
async def test_an_answer_has_its_length_and_no_session_or_csrf_cookie(path):
    # /v1/models without a key: a 401 from the endpoint adapter; /v1/nope: the 404 view.
    status, headers, body = await asgi_get(path, b"")
    assert status in (401, 404)
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert headers[b"Content-Length"] == str(len(body)).encode()
    assert b"Set-Cookie" not in headers and b"Vary" not in headers
    assert headers[b"x-request-id"].startswith(b"req_")
