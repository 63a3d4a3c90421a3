"""Serves catalog entries with a LocalRoute on the local engine, in this process.

One runtime per weight file, created on first use and kept warm: llama.cpp for GGUF chat and
completion models, the embedding engines, and the image reader. Loading (SHA-256 check
included) happens in a worker thread so the event loop never waits on it.

This runs inside the engine process (apps/engine); web processes and Celery workers reach it
through apps.providers.engine_client, which has the same interface.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
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
from apps.providers.vision.fetch import ImageError
from apps.providers.vision.reading import ImageReading

logger = logging.getLogger(__name__)

Embedder = E5Embedder | MiniLMEmbedder


def _source(route: LocalRoute) -> WeightSource:
    if route.sha256:  # an operator-supplied file with its pinned digest
        return WeightSource(
            path=route.weights, sha256=route.sha256, filename=Path(route.weights).name
        )
    return BUILTIN_WEIGHTS[route.weights]


def _local_route(entry: CatalogEntry) -> LocalRoute:
    route = entry.local_route
    if route is None:  # the engine serves only the entries it lists (apps.engine.server)
        raise ProviderError(f"The model `{entry.id}` is not a local model.", status=404)
    return route


def _engine_key(entry: CatalogEntry, *, isolated: bool = False) -> str:
    """Entries on the same weights and runtime share one loaded engine (one copy in memory)."""
    route = _local_route(entry)
    slots = 1 if isolated else route.parallel_slots
    return f"{route.runtime}:{route.weights}:{slots}:{entry.context_length}"


class LocalProvider:
    def __init__(self) -> None:
        self._engines: dict[str, LlamaRuntime | Embedder] = {}
        # A thread lock, not an asyncio one: requests may arrive on different event loops.
        self._loading = threading.Lock()
        self._installed: dict[LocalRoute, bool] = {}
        # OCR is CPU-bound and the models need the cores too: one image at a time.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-reader")

    def is_available(self, entry: CatalogEntry) -> bool:
        """Whether the entry's weights are installed (checked once: they don't change)."""
        route = _local_route(entry)
        if route not in self._installed:
            try:
                self._installed[route] = is_installed(_source(route))
            except KeyError:
                self._installed[route] = False
        return self._installed[route]

    def is_loaded(self, entry: CatalogEntry) -> bool:
        engine = self._engines.get(_engine_key(entry))
        return engine is not None and engine.is_loaded

    def running(self) -> int:
        """Generations running (or queued) in llama.cpp now, over every loaded model."""
        engines = list(self._engines.values())
        return sum(engine.running for engine in engines if isinstance(engine, LlamaRuntime))

    async def load(self, entry: CatalogEntry) -> None:
        """Load the entry's model now rather than on its first request."""
        engine = await self._engine(entry)
        await engine.load()

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
        route = _local_route(entry)
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

    async def count_prompt_tokens(self, entry: CatalogEntry, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of a chat generation on `messages` (engine messages, as chat_stream's)."""
        runtime = await self._llama(entry, isolated=False)  # same weights and template
        return await runtime.count_prompt_tokens(messages)

    async def embed(
        self, entry: CatalogEntry, inputs: list[str] | list[list[int]]
    ) -> tuple[np.ndarray, int]:
        engine = await self._engine(entry)
        assert not isinstance(engine, LlamaRuntime)
        return await engine.embed(inputs)

    async def read_image(self, data: bytes, *, detail: str = "auto") -> ImageReading:
        """What the image reader sees in an image; ImageError for an unusable image."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._reader, functools.partial(_read_image, data, detail=detail)
            )
        except ImageError:
            raise
        except (ImportError, RuntimeError, OSError) as failure:  # the reader is not installed
            logger.exception("image reader unavailable")
            raise ProviderError(
                "The image reader is unavailable on this server.",
                status=503,
                code="model_unavailable",
            ) from failure


def _read_image(data: bytes, *, detail: str) -> ImageReading:
    from apps.providers.vision.reader import read_image  # Pillow, onnxruntime: engine only

    return read_image(data, detail=detail)


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
