"""Why billing refused something; callers turn these into their own responses."""

from __future__ import annotations


class InsufficientCredit(Exception):
    """The balance minus active holds cannot cover the worst case of a call."""

    def __init__(self, *, needed_micros: int, available_micros: int) -> None:
        super().__init__(f"needs {needed_micros} µ$, {available_micros} µ$ available")
        self.needed_micros = needed_micros
        self.available_micros = available_micros


class SpendLimitExceeded(Exception):
    """A monthly spend limit (of the organization or of the API key) would be exceeded."""

    def __init__(self, *, is_key_limit: bool, limit_micros: int, committed_micros: int) -> None:
        scope = "key" if is_key_limit else "organization"
        super().__init__(f"{scope} limit {limit_micros} µ$, {committed_micros} µ$ committed")
        self.is_key_limit = is_key_limit
        self.limit_micros = limit_micros
        self.committed_micros = committed_micros  # spent this month plus calls in flight


class AlreadySettled(Exception):
    """The call was settled before; the second settlement changed nothing."""


class TopUpsNotConfigured(Exception):
    """STRIPE_SECRET_KEY is not set on this server."""


class InvalidTopUpAmount(ValueError):
    """A top-up amount outside the configured bounds (the message says which)."""
