"""Production settings: secure cookies, HSTS, its own API-key pepper; every form of the site
carries a CSRF token; and Django's own error pages never answer under /v1."""

import json
import os
import subprocess
import sys

import pytest

from plugsky_site.embedded import REPO_ROOT
from tests.asgi_client import asgi_get

PRODUCTION = {
    "PLUGSKY_ENV": "production",
    "SECRET_KEY": "x" * 50,
    "API_KEY_PEPPER": "p" * 50,
    "ALLOWED_HOSTS": "api.example.com",
    "DJANGO_SETTINGS_MODULE": "plugsky_site.settings",
}


def _settings_process(env: dict[str, str | None], code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh process with these variables (None: unset)."""
    merged = {**os.environ, **env}
    variables = {name: value for name, value in merged.items() if value is not None}
    return subprocess.run(
        [sys.executable, "-c", code], env=variables, cwd=REPO_ROOT, capture_output=True, text=True
    )


def test_production_cookies_are_secure_and_http_only():
    code = (
        "import json; from django.conf import settings as s;"
        " print(json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_HTTPONLY,"
        " s.SECURE_HSTS_SECONDS, s.DEBUG, s.X_FRAME_OPTIONS]))"
    )
    out = _settings_process(PRODUCTION, code)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        True, True, True, True, 31_536_000, False, "DENY"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/signup/",
        "/accounts/login/",
        "/accounts/password-reset/",
        "/dashboard/{org}/",
        "/dashboard/{org}/keys/",
        "/dashboard/{org}/organization/",
        "/billing/?organization={org}",
    ],
)
def test_every_post_form_carries_a_csrf_token(client, owner, organization, path, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_never_called"
    if path.startswith(("/dashboard", "/billing")):
        client.force_login(owner)
    page = client.get(path.format(org=organization.pk)).content.decode()
    forms = page.split("<form")[1:]
    post_forms = [form for form in forms if 'method="post"' in form.split(">")[0]]
    assert post_forms
    for form in post_forms:
        assert "csrfmiddlewaretoken" in form.split("</form>")[0]


@pytest.mark.parametrize("pepper", [None, "", "x" * 50])  # unset, empty, the SECRET_KEY itself
def test_production_refuses_to_start_without_its_own_api_key_pepper(pepper):
    code = "from django.conf import settings; settings.API_KEY_PEPPER"
    process = _settings_process({**PRODUCTION, "API_KEY_PEPPER": pepper}, code)
    assert process.returncode != 0
    assert (
        "ImproperlyConfigured: API_KEY_PEPPER must be set, and differ from SECRET_KEY, "
        "when PLUGSKY_ENV=production"
    ) in process.stderr


def test_production_uses_its_own_pepper():
    code = "from django.conf import settings; print(settings.API_KEY_PEPPER)"
    out = _settings_process(PRODUCTION, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "p" * 50


BAD_REQUEST = {
    "error": {
        "message": "The request could not be understood by the server (bad request).",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions", "/v1/nope"])
def test_a_disallowed_host_under_v1_is_a_json_400(client, db, settings, debug, path):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    settings.DEBUG = debug
    response = client.get(path, HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == BAD_REQUEST
    assert response["x-request-id"].startswith("req_")


def test_a_disallowed_host_elsewhere_keeps_django_page(client, db, settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    response = client.get("/pricing/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("path", "query_string"),
    [("/v1/models", b"\xff=\xfe"), ("/v1/chat/completions", b"a=\xc3\x28")],
)
async def test_an_undecodable_request_under_v1_is_a_json_400(path, query_string):
    # Daphne refuses these itself; other ASGI servers pass them to Django's handler.
    status, headers, body = await asgi_get(path, query_string)
    assert status == 400
    assert headers[b"Content-Type"] == b"application/json"
    assert json.loads(body) == BAD_REQUEST


async def test_an_undecodable_request_elsewhere_keeps_django_answer():
    status, headers, _ = await asgi_get("/pricing/", b"\xff")
    assert status == 400
    assert headers[b"Content-Type"].startswith(b"text/html")
