import re

from django.test import override_settings

from apps.keys import secrets


def test_generated_key_is_prefixed_and_long_enough():
    raw_key = secrets.generate()
    assert re.fullmatch(r"sk-live-[A-Za-z0-9_-]{43}", raw_key)
    assert secrets.is_well_formed(raw_key)


def test_generated_keys_are_unique():
    assert len({secrets.generate() for _ in range(200)}) == 200


def test_digest_is_keyed_by_the_pepper():
    raw_key = secrets.generate()
    with override_settings(API_KEY_PEPPER="pepper-one"):
        first = secrets.digest(raw_key)
        assert secrets.digest(raw_key) == first
    with override_settings(API_KEY_PEPPER="pepper-two"):
        assert secrets.digest(raw_key) != first
    assert raw_key not in first and len(first) == 64


def test_matches_accepts_the_key_and_rejects_others():
    raw_key = secrets.generate()
    stored = secrets.digest(raw_key)
    assert secrets.matches(raw_key, stored)
    assert not secrets.matches(raw_key[:-1] + ("A" if raw_key[-1] != "A" else "B"), stored)


def test_display_form_shows_only_the_last_four():
    raw_key = "sk-live-" + "x" * 39 + "WXYZ"
    assert secrets.display_form(raw_key) == "sk-live-…WXYZ"


def test_malformed_keys_are_not_well_formed():
    for raw_key in ["", "sk-live-", "sk-live-short", "sk-test-" + "a" * 43, "sk-live-" + "é" * 40]:
        assert not secrets.is_well_formed(raw_key)
