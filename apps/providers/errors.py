"""The one error type providers raise; the gateway turns it into OpenAI's envelope."""

from __future__ import annotations


class ProviderError(Exception):
    def __init__(
        self, message: str, *, status: int, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param

    @property
    def type(self) -> str:
        """OpenAI's error `type`: the client's fault below 500, the server's from 500 up."""
        return "invalid_request_error" if self.status < 500 else "server_error"
