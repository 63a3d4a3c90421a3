"""The tester's audio in a real Chromium: record from the microphone, upload a file, see the
transcripts, type text and play the speech; every call billed as tester traffic.

Chromium's fake capture device plays a WAV file as the microphone. The file is speech made by
our own voice through the API (espeak-ng's speech is transcribed with errors, models.md), with
silence after it: the fake device loops its file, and the silence keeps a recording that runs
a little long from hearing the sentence start again.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect, sync_playwright

from apps.billing.models import CreditAccount, CreditHold, HoldStatus
from apps.usage.models import UsageRecord
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.live import run_server

pytestmark = pytest.mark.xdist_group("browser")

SPOKEN = "Please send the blue folder to the office today."
UPLOADED = "The train leaves the station at noon."
TYPED = "Good evening. The tester can speak."
SAMPLE_RATE = 24_000
TRAILING_SILENCE_S = 2.0
MODEL_CALL_MS = 90_000  # a model's first call loads it (Whisper base: a few seconds)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != other))
    return row[-1] / len(ref)


@pytest.fixture
def server(transactional_db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    running = run_server()
    yield next(running)
    running.close()


@pytest.fixture
def speech(server, owner):  # type: ignore[no-untyped-def]
    """The openai SDK on the live server, with a key of the owner's (to make the test audio)."""
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create

    organization = personal_organization_for(user=owner)
    _, raw_key = api_key_create(organization=organization, created_by=owner, name="audio")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=raw_key, max_retries=0, timeout=120)
    return client.audio.speech


def _microphone_file(speech, folder: Path) -> tuple[Path, float]:  # type: ignore[no-untyped-def]
    """Our voice saying SPOKEN as a plain 16-bit WAV, then silence; and the speech's length."""
    pcm = speech.create(model="plugsky-tts", voice="heart", input=SPOKEN, response_format="pcm")
    samples = pcm.content
    path = folder / "microphone.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(samples + b"\0\0" * int(TRAILING_SILENCE_S * SAMPLE_RATE))
    return path, len(samples) / 2 / SAMPLE_RATE


@pytest.fixture
def page_with_microphone(speech, tmp_path) -> Iterator[tuple[Page, float]]:  # type: ignore[no-untyped-def]
    microphone, seconds = _microphone_file(speech, tmp_path)
    fake_media = [
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *fake_media]
        )
        context = browser.new_context(viewport={"width": 1366, "height": 1100})
        context.set_default_timeout(60_000)
        try:
            yield context.new_page(), seconds
        finally:
            context.close()
            browser.close()


def _open_tester(page: Page, base_url: str, owner) -> int:  # type: ignore[no-untyped-def]
    from apps.accounts.selectors import personal_organization_for

    client = Client()
    client.force_login(owner)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base_url}]
    )
    organization = personal_organization_for(user=owner)
    page.goto(f"{base_url}/dashboard/{organization.pk}/tester/")
    expect(page.get_by_role("heading", name="Audio")).to_be_visible()
    return organization.pk


def _tester_record(**fields):  # type: ignore[no-untyped-def]
    """The one tester call of the kind, billed without a key."""
    (record,) = UsageRecord.objects.filter(is_tester=True, **fields)
    assert record.api_key_id is None and record.status == 200
    return record


@pytest.fixture(autouse=True)
def _orm_between_browser_steps(monkeypatch):  # type: ignore[no-untyped-def]
    # Playwright's sync API runs an event loop in this thread; the test's ORM reads are plain
    # synchronous calls between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def test_the_tester_transcribes_a_recording_and_a_file_and_plays_speech(
    server, owner, speech, page_with_microphone
) -> None:
    page, spoken_s = page_with_microphone
    organization_id = _open_tester(page, server, owner)
    panel = page.locator("#stt-card")

    # Record: the fake microphone says SPOKEN; stop once it has, inside the silence after it.
    panel.get_by_label("Model").select_option("plugsky-whisper-tiny-en")
    expect(panel.get_by_label("Language")).to_be_disabled()  # an English-only model
    panel.get_by_role("button", name="● Record").click()
    stop = panel.get_by_role("button", name="■ Stop recording")
    expect(stop).to_be_visible()
    page.wait_for_timeout(int((spoken_s + 1.0) * 1000))
    stop.click()
    expect(panel.locator("#audio-source")).to_contain_text("Recording, ")
    panel.get_by_role("button", name="Transcribe").click()
    transcript = panel.locator("#transcript")
    expect(transcript).not_to_be_empty(timeout=MODEL_CALL_MS)
    assert _word_error_rate(SPOKEN, transcript.inner_text()) <= 0.10, transcript.inner_text()
    expect(panel.locator("#transcript-meta")).to_contain_text("Billed $0.0")
    recorded = _tester_record(endpoint="audio.transcriptions", model="plugsky-whisper-tiny-en")
    assert spoken_s < recorded.prompt_tokens <= spoken_s + 3  # the recording's seconds
    page.screenshot(path=str(SCREENSHOTS / "tester-audio-recording.png"), full_page=True)

    # Upload: an mp3 made by the same voice, transcribed by the multilingual model in English.
    mp3 = speech.create(model="plugsky-tts", voice="heart", input=UPLOADED).content
    panel.get_by_label("Audio file").set_input_files(
        {"name": "train.mp3", "mimeType": "audio/mpeg", "buffer": mp3}
    )
    panel.get_by_label("Model").select_option("plugsky-whisper-base")
    panel.get_by_label("Language").select_option("en")
    panel.get_by_role("button", name="Transcribe").click()
    expect(transcript).to_contain_text("station", timeout=MODEL_CALL_MS)
    assert _word_error_rate(UPLOADED, transcript.inner_text()) <= 0.10, transcript.inner_text()
    expect(panel.locator("#transcript-meta")).to_contain_text("English")
    uploaded = _tester_record(endpoint="audio.transcriptions", model="plugsky-whisper-base")
    assert uploaded.cost_micros == uploaded.prompt_tokens * 60  # whisper base's price a second

    # Speech: typed text, played by an <audio> element with a real, finite duration.
    voice = page.locator("#tts-card")
    voice.get_by_label("Text").fill(TYPED)
    voice.get_by_role("button", name="Speak").click()
    player = page.locator("#speech-audio")
    expect(player).to_be_visible(timeout=MODEL_CALL_MS)
    duration = player.evaluate(
        """audio => new Promise((resolve, reject) => {
            if (audio.readyState >= 1) return resolve(audio.duration);
            audio.addEventListener("loadedmetadata", () => resolve(audio.duration));
            audio.addEventListener("error", () => reject(new Error("the audio did not load")));
        })"""
    )
    assert 1.0 < duration < 6.0  # two short sentences; not 0, NaN or Infinity
    assert player.evaluate("audio => audio.src").startswith("blob:")
    expect(voice.locator("#speech-meta")).to_contain_text(f"{len(TYPED)} characters · Billed $")
    spoken = _tester_record(endpoint="audio.speech")
    assert (spoken.prompt_tokens, spoken.cost_micros) == (len(TYPED), len(TYPED) * 5)
    page.screenshot(path=str(SCREENSHOTS / "tester-audio.png"), full_page=True)

    # Every tester call is billed: the ledger holds the three costs and no hold is left.
    account = CreditAccount.objects.get(organization_id=organization_id)
    assert account.held_micros == 0
    billed = sum(record.cost_micros for record in UsageRecord.objects.filter(is_tester=True))
    assert billed == recorded.cost_micros + uploaded.cost_micros + spoken.cost_micros


def test_an_error_is_shown_in_openais_words(server, owner, page_with_microphone) -> None:
    page, _ = page_with_microphone
    _open_tester(page, server, owner)
    panel = page.locator("#stt-card")
    panel.get_by_label("Audio file").set_input_files(
        {"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"not audio at all" * 64}
    )
    panel.get_by_role("button", name="Transcribe").click()
    expect(panel.locator("#stt-error")).to_have_text(
        "Audio file might be corrupted or unsupported."
    )
    assert not UsageRecord.objects.filter(is_tester=True).exists()
    assert not CreditHold.objects.filter(status=HoldStatus.ACTIVE).exists()
