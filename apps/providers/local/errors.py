"""The one exception the local engine raises for anything that becomes an HTTP error."""

from __future__ import annotations

from typing import Any

from apps.providers.errors import ProviderError

__all__ = ["EngineError"]


class EngineError(ProviderError):
    """A request the engine could not serve, with the OpenAI error fields to report it.

    ``status`` is the HTTP status to answer with; ``code`` and ``param`` follow OpenAI's error
    object (``context_length_exceeded`` / ``messages``, ``model_unavailable`` …).
    """

    @property
    def type(self) -> str:
        """OpenAI's error ``type``: the client's fault below 500, the server's from 500 up."""
        return "invalid_request_error" if self.status < 500 else "server_error"

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object (without the outer ``{"error": …}`` envelope)."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def __repr__(self) -> str:
        return (
            f"EngineError({self.message!r}, status={self.status}, code={self.code!r}, "
            f"param={self.param!r})"
        )
