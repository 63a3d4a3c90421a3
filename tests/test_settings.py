"""Settings the whole suite relies on, set once in plugsky_site/settings.py for PLUGSKY_ENV=test."""

from django.conf import settings
from django.contrib.auth.hashers import get_hasher


def test_the_suite_hashes_passwords_fast() -> None:
    # Live servers the tests start inherit PLUGSKY_ENV=test, so they hash the same way.
    assert settings.PLUGSKY_ENV == "test"
    assert get_hasher().algorithm == "md5"
