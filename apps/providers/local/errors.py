"""The one exception the local engine raises for anything that becomes an HTTP error."""

from __future__ import annotations

from apps.providers.errors import ProviderError

__all__ = ["EngineError"]


class EngineError(ProviderError):
    """A request the engine could not serve, with the OpenAI error fields to report it.

    ``status`` is the HTTP status to answer with; ``code`` and ``param`` follow OpenAI's error
    object (``context_length_exceeded`` / ``messages``, ``model_unavailable`` …).
    """

    def __repr__(self) -> str:
        return (
            f"EngineError({self.message!r}, status={self.status}, code={self.code!r}, "
            f"param={self.param!r})"
        )
