"""The API key format and its keyed digest. Pure functions: no database, no cache.

A key is `sk-live-` followed by 43 URL-safe characters (32 random bytes). Only an HMAC-SHA256
digest keyed by settings.API_KEY_PEPPER is stored, so a leaked table cannot be replayed, and a
display form (`sk-live-…` + last 4) lets people tell their keys apart. Admin keys
(`sk-admin-…`, the organization admin API only) are made and stored the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.conf import settings

PREFIX = "sk-live-"
# Admin keys (the organization admin API only) share the digest, not the prefix: a glance, or a
# secret scanner, tells the two apart, and neither authenticates where the other does.
ADMIN_PREFIX = "sk-admin-"
_RANDOM_BYTES = 32
_KEY_PATTERN = re.compile(r"^sk-live-[A-Za-z0-9_-]{32,128}$")
_ADMIN_KEY_PATTERN = re.compile(r"^sk-admin-[A-Za-z0-9_-]{32,128}$")


def generate() -> str:
    """A new random key, in full. Shown once to its owner, never stored."""
    return PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def generate_admin() -> str:
    """A new random admin key, in full; like `generate`, shown once and never stored."""
    return ADMIN_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def is_well_formed(raw_key: str) -> bool:
    return bool(_KEY_PATTERN.match(raw_key))


def is_well_formed_admin(raw_key: str) -> bool:
    return bool(_ADMIN_KEY_PATTERN.match(raw_key))


def digest(raw_key: str) -> str:
    """The keyed digest stored and looked up in place of the key."""
    pepper = settings.API_KEY_PEPPER.encode()
    return hmac.new(pepper, raw_key.encode(), hashlib.sha256).hexdigest()


def matches(raw_key: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented key against a stored digest."""
    return hmac.compare_digest(digest(raw_key), stored_digest)


def display_form(raw_key: str) -> str:
    prefix = ADMIN_PREFIX if raw_key.startswith(ADMIN_PREFIX) else PREFIX
    return f"{prefix}…{raw_key[-4:]}"
