"""Production settings: secure cookies, HSTS; and every form of the site carries a CSRF token."""

import json
import os
import subprocess
import sys

import pytest

from plugsky_site.embedded import REPO_ROOT


def test_production_cookies_are_secure_and_http_only():
    env = {
        **os.environ,
        "PLUGSKY_ENV": "production",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "api.example.com",
        "DJANGO_SETTINGS_MODULE": "plugsky_site.settings",
    }
    code = (
        "import json; from django.conf import settings as s;"
        " print(json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_HTTPONLY,"
        " s.SECURE_HSTS_SECONDS, s.DEBUG, s.X_FRAME_OPTIONS]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
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
