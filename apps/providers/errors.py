"""The one error type providers raise; the gateway turns it into OpenAI's envelope."""

from __future__ import annotations


class ProviderError(Exception):
    """A call a provider could not serve.

    `retryable` marks failures of the backend, not of the request (connection refused, timeout,
    5xx, 429): the gateway may try the route again or the next one, as long as nothing has
    reached the client. `retry_after_s` is the backend's own hint (a 429's Retry-After).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        param: str | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.retryable = retryable
        self.retry_after_s = retry_after_s

    @property
    def type(self) -> str:
        """OpenAI's error `type`: the client's fault below 500, the server's from 500 up."""
        return "invalid_request_error" if self.status < 500 else "server_error"
