"""Serves catalog entries with a LocalRoute on the in-process local engine.

One runtime per weight file, created on first use and kept warm: llama.cpp for GGUF chat and
completion models, and the embedding engines. Loading (SHA-256 check included) happens in a
worker thread so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from apps.catalog.entries import CatalogEntry, LocalRoute
from apps.providers.errors import ProviderError
from apps.providers.local import (
    BUILTIN_WEIGHTS,
    E5Embedder,
    LlamaRuntime,
    MiniLMEmbedder,
    WeightSource,
    is_installed,
    resolve_weights,
)

Embedder = E5Embedder | MiniLMEmbedder


def _source(route: LocalRoute) -> WeightSource:
    if route.sha256:  # an operator-supplied file with its pinned digest
        return WeightSource(
            path=route.weights, sha256=route.sha256, filename=Path(route.weights).name
        )
    return BUILTIN_WEIGHTS[route.weights]


def _engine_key(entry: CatalogEntry) -> str:
    """Entries on the same weights and runtime share one loaded engine (one copy in memory)."""
    route = entry.route
    return f"{route.runtime}:{route.weights}:{route.parallel_slots}:{entry.context_length}"


class LocalProvider:
    def __init__(self) -> None:
        self._engines: dict[str, LlamaRuntime | Embedder] = {}
        # A thread lock, not an asyncio one: requests may arrive on different event loops.
        self._loading = threading.Lock()

    def engine_id(self, entry: CatalogEntry) -> str:
        """Which loaded engine serves the entry (entries may share one)."""
        return _engine_key(entry)

    def is_available(self, entry: CatalogEntry) -> bool:
        try:
            return is_installed(_source(entry.route))
        except KeyError:
            return False

    async def _engine(self, entry: CatalogEntry) -> LlamaRuntime | Embedder:
        engine = self._engines.get(_engine_key(entry))
        if engine is not None:
            return engine
        return await asyncio.to_thread(self._load_once, entry)

    def _load_once(self, entry: CatalogEntry) -> LlamaRuntime | Embedder:
        key = _engine_key(entry)
        with self._loading:
            if key not in self._engines:
                self._engines[key] = self._load(entry)
            return self._engines[key]

    def _load(self, entry: CatalogEntry) -> LlamaRuntime | Embedder:
        route = entry.route
        try:
            path = resolve_weights(_source(route))
        except Exception as failure:
            raise ProviderError(
                f"The model `{entry.id}` cannot be loaded: {failure}",
                status=503,
                code="model_unavailable",
            ) from failure
        if route.runtime == "llama":
            return LlamaRuntime(
                path,
                n_ctx=entry.context_length * route.parallel_slots,
                n_parallel=route.parallel_slots,
            )
        if route.runtime == "e5":
            return E5Embedder(path)
        if route.runtime == "minilm":
            return MiniLMEmbedder(path)
        raise ProviderError(f"unknown runtime {route.runtime!r}", status=500)

    async def _llama(self, entry: CatalogEntry) -> LlamaRuntime:
        engine = await self._engine(entry)
        assert isinstance(engine, LlamaRuntime)
        return engine

    async def chat_stream(
        self, entry: CatalogEntry, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        runtime = await self._llama(entry)
        async for chunk in _closing(runtime.chat_stream(body)):
            yield chunk

    async def complete_stream(
        self, entry: CatalogEntry, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        runtime = await self._llama(entry)
        async for chunk in _closing(runtime.complete_stream(body)):
            yield chunk

    async def embed(
        self, entry: CatalogEntry, inputs: list[str] | list[list[int]]
    ) -> tuple[np.ndarray, int]:
        engine = await self._engine(entry)
        assert not isinstance(engine, LlamaRuntime)
        return await engine.embed(inputs)


async def _closing(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Closing this closes the engine stream at once, which frees the llama.cpp slot."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


LOCAL_PROVIDER = LocalProvider()
