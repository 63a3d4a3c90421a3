"""Seeded generations run alone on their engine, so the same seed gives the same text.

llama.cpp batches the requests that share an engine, and a sequence decoded in a batch gets
slightly different logits from one decoded alone (other kernels, another summation order).
Sampling at temperature > 0 turns those differences into different text, so a seed would only
be reproducible on an idle server. A seeded stream therefore takes its engine exclusively: it
waits for running streams to finish, and streams arriving meanwhile wait for it (it is
preferred, so a busy server cannot starve it). Unseeded streams share the engine as before.

The engine lives in this process, and so does the gate (one per model per event loop; the web
server runs one loop). The price is throughput: while a seeded request runs, it has the model
to itself, and its n choices run one after another.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

Chunk = dict[str, Any]


class EngineGate:
    """A readers-writer lock that prefers writers: shared streams, exclusive seeded ones."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    @asynccontextmanager
    async def hold(self, *, exclusive: bool) -> AsyncIterator[None]:
        await (self._enter_exclusive() if exclusive else self._enter_shared())
        try:
            yield
        finally:
            await asyncio.shield(self._leave(exclusive=exclusive))

    async def _enter_shared(self) -> None:
        async with self._condition:
            await self._condition.wait_for(
                lambda: not self._exclusive and not self._exclusive_waiting
            )
            self._shared += 1

    async def _enter_exclusive(self) -> None:
        async with self._condition:
            self._exclusive_waiting += 1
            try:
                await self._condition.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._exclusive_waiting -= 1
            self._exclusive = True

    async def _leave(self, *, exclusive: bool) -> None:
        async with self._condition:
            if exclusive:
                self._exclusive = False
            else:
                self._shared -= 1
            self._condition.notify_all()


_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, EngineGate]] = (
    weakref.WeakKeyDictionary()
)


def gate_for(engine_id: str) -> EngineGate:
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    return gates.setdefault(engine_id, EngineGate())


async def gated(
    engine_id: str, start: Callable[[], AsyncIterator[Chunk]], *, exclusive: bool
) -> AsyncIterator[Chunk]:
    """The stream `start()` opens, run while holding its engine's gate."""
    async with gate_for(engine_id).hold(exclusive=exclusive):
        stream = start()
        try:
            async for chunk in stream:
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
