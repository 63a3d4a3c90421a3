"""The one exception the local engine raises for anything that becomes an HTTP error."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apps.providers.errors import ProviderError

__all__ = ["EngineError", "check_token_ids"]


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


def check_token_ids(ids: Iterable[Any], *, vocabulary_size: int, param: str) -> None:
    """A 400 naming `param` unless every id is an integer inside the model's vocabulary.

    An id past the vocabulary would index past the embedding table (or be wrapped or dropped by
    llama.cpp without a word).
    """
    for token in ids:
        if type(token) is not int or not 0 <= token < vocabulary_size:
            raise EngineError(
                f"Invalid '{param}': token id {token!r} is not in this model's vocabulary "
                f"(token ids are integers from 0 to {vocabulary_size - 1}).",
                status=400,
                code="invalid_value",
                param=param,
            )
