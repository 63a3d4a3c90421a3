"""The API key format and its keyed digest. Pure functions: no database, no cache.

A key is `sk-live-` followed by 43 URL-safe characters (32 random bytes). Only an HMAC-SHA256
digest keyed by settings.API_KEY_PEPPER is stored, so a leaked table cannot be replayed, and a
display form (`sk-live-…` + last 4) lets people tell their keys apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.conf import settings

PREFIX = "sk-live-"
_RANDOM_BYTES = 32
_KEY_PATTERN = re.compile(r"^sk-live-[A-Za-z0-9_-]{32,128}$")


def generate() -> str:
    """A new random key, in full. Shown once to its owner, never stored."""
    return PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def is_well_formed(raw_key: str) -> bool:
    return bool(_KEY_PATTERN.match(raw_key))


def digest(raw_key: str) -> str:
    """The keyed digest stored and looked up in place of the key."""
    pepper = settings.API_KEY_PEPPER.encode()
    return hmac.new(pepper, raw_key.encode(), hashlib.sha256).hexdigest()


def matches(raw_key: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented key against a stored digest."""
    return hmac.compare_digest(digest(raw_key), stored_digest)


def display_form(raw_key: str) -> str:
    return f"{PREFIX}…{raw_key[-4:]}"
