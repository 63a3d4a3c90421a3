"""Counting failures in the shared (Redis) cache to slow down password guessing.

A window starts at the first failure and lasts `window_s`; `cache.add` + `cache.incr` are atomic
in Redis, so concurrent attempts from many web processes are all counted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Throttle:
    scope: str
    limit: int
    window_s: int

    def _key(self, identity: str) -> str:
        # Hashed: no email addresses or IPs in cache key listings.
        return f"throttle:{self.scope}:{hashlib.sha256(identity.encode()).hexdigest()[:32]}"

    def is_blocked(self, identity: str) -> bool:
        return int(cache.get(self._key(identity)) or 0) >= self.limit

    def hit(self, identity: str) -> int:
        """Count one event; returns the count in the current window."""
        key = self._key(identity)
        cache.add(key, 0, timeout=self.window_s)
        try:
            return int(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=self.window_s)
            return 1

    def reset(self, identity: str) -> None:
        cache.delete(self._key(identity))


def login_throttles() -> tuple[Throttle, Throttle]:
    """Failures per address+email (a targeted guess) and per address (spraying many emails)."""
    window = settings.ACCOUNTS_LOGIN_FAILURE_WINDOW_S
    return (
        Throttle("login", settings.ACCOUNTS_LOGIN_FAILURE_LIMIT, window),
        Throttle("login-ip", settings.ACCOUNTS_LOGIN_FAILURE_LIMIT_PER_IP, window),
    )


def signup_throttle() -> Throttle:
    return Throttle("signup", settings.ACCOUNTS_SIGNUP_LIMIT_PER_IP, 3600)


def email_throttle() -> Throttle:
    """Emails a user may trigger (verification resends, password resets) per hour."""
    return Throttle("email", 5, 3600)
