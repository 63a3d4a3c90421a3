"""The interface every provider offers the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import numpy as np

from apps.catalog.entries import CatalogEntry
from apps.providers.vision.reading import ImageReading

Chunk = dict[str, Any]


class Provider(Protocol):
    def is_available(self, entry: CatalogEntry) -> bool:
        """Whether the entry can be served now; cheap, called per request."""
        ...

    def chat_stream(
        self, entry: CatalogEntry, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[Chunk]:
        """Engine chunks of a chat generation; closing the iterator cancels it."""
        ...

    def complete_stream(
        self, entry: CatalogEntry, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[Chunk]: ...

    async def embed(
        self, entry: CatalogEntry, inputs: list[str] | list[list[int]]
    ) -> tuple[np.ndarray, int]:
        """L2-normalised float32 vectors, one row per input, and the prompt tokens used."""
        ...

    async def read_image(self, data: bytes, *, detail: str = "auto") -> ImageReading: ...
