"""The tester's audio endpoints over HTTP on a live server: members only, CSRF-protected, the
API's own checks and errors, billed to the organization as tester calls with no key."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from django.conf import settings
from django.test import Client

from apps.accounts.selectors import personal_organization_for
from apps.billing.models import CreditAccount, CreditHold
from apps.usage.models import UsageRecord
from tests.factories import make_user
from tests.live import run_server


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    running = run_server()
    yield next(running)
    running.close()


def _browser(server: str, user) -> tuple[httpx.Client, dict[str, str], int]:  # type: ignore[no-untyped-def]
    """A signed-in member's session as their browser has it: the cookie, and the page's CSRF
    token (read from the tester page, as the page's script reads it)."""
    client = Client()
    client.force_login(user)
    organization = personal_organization_for(user=user)
    browser = httpx.Client(base_url=server, timeout=120)
    browser.cookies.set(
        settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value
    )
    page = browser.get(f"/dashboard/{organization.pk}/tester/")
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None
    return browser, {"X-CSRFToken": token.group(1)}, organization.pk


def _silence_wav(seconds: float) -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
        writer.writeframes(np.zeros(int(seconds * 16_000), dtype="<i2").tobytes())
    return buffer.getvalue()


def _nothing_held_or_billed() -> None:
    assert not UsageRecord.objects.exists()
    assert not CreditHold.objects.exists()


def test_speech_from_the_tester_is_billed_as_tester_traffic(server, transactional_db, owner):
    browser, csrf, organization_id = _browser(server, owner)
    before = CreditAccount.objects.get(organization_id=organization_id).balance_micros
    response = browser.post(
        f"/dashboard/{organization_id}/tester/audio/speech",
        json={
            "model": "plugsky-tts",
            "voice": "heart",
            "input": "Hello there.",
            "response_format": "pcm",
        },
        headers=csrf,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/pcm"
    assert len(response.content) > 24_000  # more than half a second of 16-bit audio
    assert response.headers["x-plugsky-cost"] == "0.000060"  # 12 characters at 5 µ$
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert (record.is_tester, record.api_key_id, record.endpoint) == (True, None, "audio.speech")
    assert (record.prompt_tokens, record.cost_micros) == (12, 60)
    account = CreditAccount.objects.get(organization_id=organization_id)
    assert (before - account.balance_micros, account.held_micros) == (60, 0)


def test_a_transcription_from_the_tester_is_billed_by_the_second(server, transactional_db, owner):
    browser, csrf, organization_id = _browser(server, owner)
    response = browser.post(
        f"/dashboard/{organization_id}/tester/audio/transcriptions",
        data={"model": "plugsky-whisper-tiny-en", "response_format": "verbose_json"},
        files={"file": ("silence.wav", _silence_wav(2.5), "audio/wav")},
        headers=csrf,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["language"], body["usage"]) == (
        "english",
        {"type": "duration", "seconds": 3, "cost": 0.00009},
    )
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert (record.is_tester, record.api_key_id, record.endpoint) == (
        True,
        None,
        "audio.transcriptions",
    )
    assert (record.prompt_tokens, record.cost_micros) == (3, 90)


def test_the_apis_errors_come_back_in_its_envelope_and_leave_nothing(
    server, transactional_db, owner
):
    browser, csrf, organization_id = _browser(server, owner)
    response = browser.post(
        f"/dashboard/{organization_id}/tester/audio/speech",
        json={"model": "plugsky-tts", "voice": "alloy", "input": "Hi."},
        headers=csrf,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "voice"
    response = browser.post(
        f"/dashboard/{organization_id}/tester/audio/transcriptions",
        data={"model": "plugsky-whisper-tiny-en"},
        files={"file": ("a.wav", b"not audio" * 50, "audio/wav")},
        headers=csrf,
    )
    assert (response.status_code, response.json()["error"]["param"]) == (400, "file")
    _nothing_held_or_billed()


def test_an_outsider_a_stranger_and_a_forged_post_are_refused(server, transactional_db, owner):
    organization_id = personal_organization_for(user=owner).pk
    outsider = make_user("outsider@example.com")
    browser, csrf, _ = _browser(server, outsider)
    speech = {"model": "plugsky-tts", "voice": "heart", "input": "Hi."}
    response = browser.post(
        f"/dashboard/{organization_id}/tester/audio/speech", json=speech, headers=csrf
    )
    assert (response.status_code, response.json()["error"]["code"]) == (403, "not_a_member")
    anonymous = httpx.post(f"{server}/dashboard/{organization_id}/tester/audio/speech", json=speech)
    assert anonymous.status_code == 403  # no session: no CSRF cookie either, refused first
    member_browser, _, _ = _browser(server, owner)
    forged = member_browser.post(f"/dashboard/{organization_id}/tester/audio/speech", json=speech)
    assert forged.status_code == 403  # the session alone, without the page's token
    assert (
        member_browser.get(f"/dashboard/{organization_id}/tester/audio/speech").status_code == 405
    )
    _nothing_held_or_billed()
