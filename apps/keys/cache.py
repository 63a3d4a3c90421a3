"""What authentication keeps in the shared (Redis) cache for each key digest."""

from __future__ import annotations

REVOKED = "revoked"
UNKNOWN = "unknown"


def identity_cache_key(digest: str) -> str:
    return f"apikey:identity:{digest}"


def touched_cache_key(digest: str) -> str:
    return f"apikey:touched:{digest}"
