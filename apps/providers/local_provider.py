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


def _engine_key(entry: CatalogEntry, *, isolated: bool = False) -> str:
    """Entries on the same weights and runtime share one loaded engine (one copy in memory)."""
    route = entry.route
    slots = 1 if isolated else route.parallel_slots
    return f"{route.runtime}:{route.weights}:{slots}:{entry.context_length}"


class LocalProvider:
    def __init__(self) -> None:
        self._engines: dict[str, LlamaRuntime | Embedder] = {}
        # A thread lock, not an asyncio one: requests may arrive on different event loops.
        self._loading = threading.Lock()

    def is_available(self, entry: CatalogEntry) -> bool:
        try:
            return is_installed(_source(entry.route))
        except KeyError:
            return False

    async def _engine(
        self, entry: CatalogEntry, *, isolated: bool = False
    ) -> LlamaRuntime | Embedder:
        engine = self._engines.get(_engine_key(entry, isolated=isolated))
        if engine is not None:
            return engine
        return await asyncio.to_thread(self._load_once, entry, isolated)

    def _load_once(self, entry: CatalogEntry, isolated: bool) -> LlamaRuntime | Embedder:
        key = _engine_key(entry, isolated=isolated)
        with self._loading:
            if key not in self._engines:
                self._engines[key] = self._load(entry, slots=1 if isolated else None)
            return self._engines[key]

    def _load(self, entry: CatalogEntry, *, slots: int | None = None) -> LlamaRuntime | Embedder:
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
            slots = slots or route.parallel_slots
            return LlamaRuntime(path, n_ctx=entry.context_length * slots, n_parallel=slots)
        if route.runtime == "e5":
            return E5Embedder(path)
        if route.runtime == "minilm":
            return MiniLMEmbedder(path)
        raise ProviderError(f"unknown runtime {route.runtime!r}", status=500)

    async def _llama(self, entry: CatalogEntry, *, isolated: bool) -> LlamaRuntime:
        engine = await self._engine(entry, isolated=isolated)
        assert isinstance(engine, LlamaRuntime)
        return engine

    async def chat_stream(
        self, entry: CatalogEntry, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Chunks of a chat generation. `isolated`: see `_isolated_body`."""
        runtime = await self._llama(entry, isolated=isolated)
        request = _isolated_body(body) if isolated else body
        async for chunk in _closing(runtime.chat_stream(request)):
            yield chunk

    async def complete_stream(
        self, entry: CatalogEntry, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        runtime = await self._llama(entry, isolated=isolated)
        request = _isolated_body(body) if isolated else body
        async for chunk in _closing(runtime.complete_stream(request)):
            yield chunk

    async def embed(
        self, entry: CatalogEntry, inputs: list[str] | list[list[int]]
    ) -> tuple[np.ndarray, int]:
        engine = await self._engine(entry)
        assert not isinstance(engine, LlamaRuntime)
        return await engine.embed(inputs)


def _isolated_body(body: dict[str, Any]) -> dict[str, Any]:
    """A generation that must be reproducible (a seeded request) runs on its own engine.

    llama.cpp batches the sequences that share an engine, and a sequence decoded beside others
    gets slightly different logits (other kernel shapes, another summation order), which
    sampling turns into different text. So seeded requests go to a second, single-slot engine
    of the same weights (loaded on first use): they never share a batch, and no prompt cache
    from an earlier request is reused. They queue behind each other there, but never slow down
    unseeded traffic on the main engine.
    """
    return {**body, "cache_prompt": False}


async def _closing(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Closing this closes the engine stream at once, which frees the llama.cpp slot."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


LOCAL_PROVIDER = LocalProvider()
