"""Exact token counts of the engine's generations as their chunks flow.

llama.cpp reports `timings` (prompt_n, cache_n, predicted_n) with every chunk and `usage` at the
end, so the counts are exact at every point: a call cut short is billed to the token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from apps.providers.base import Chunk, Usage


@dataclass
class Tally:
    """Tokens of one call over all its engine jobs (choice `index`, one job each).

    Choices come in groups of `samples_per_prompt` (the request's n) that share one prompt:
    OpenAI counts each prompt once, however many samples are drawn from it.
    """

    usage: Usage
    samples_per_prompt: int = 1
    prompt_by_choice: dict[int, int] = field(default_factory=dict)
    cached_by_choice: dict[int, int] = field(default_factory=dict)
    completion_by_choice: dict[int, int] = field(default_factory=dict)

    def observe(self, index: int, chunk: Chunk) -> None:
        """Update from an engine chunk of choice `index`: per-token timings, or final usage."""
        usage, timings = chunk.get("usage"), chunk.get("timings")
        if usage:
            self.prompt_by_choice[index] = int(usage.get("prompt_tokens", 0))
            self.completion_by_choice[index] = int(usage.get("completion_tokens", 0))
            details = usage.get("prompt_tokens_details") or {}
            if "cached_tokens" in details:  # else the last timings' cache_n stands
                self.cached_by_choice[index] = int(details["cached_tokens"])
        elif timings:
            cached = int(timings.get("cache_n", 0))
            self.prompt_by_choice[index] = int(timings.get("prompt_n", 0)) + cached
            self.cached_by_choice[index] = cached
            self.completion_by_choice[index] = int(timings.get("predicted_n", 0))
        else:
            return
        self._report()

    def _report(self) -> None:
        self.usage.prompt_tokens = self._per_prompt(self.prompt_by_choice)
        self.usage.cached_tokens = self._per_prompt(self.cached_by_choice)
        self.usage.completion_tokens = sum(self.completion_by_choice.values())
        self.usage.exact = True

    def _per_prompt(self, by_choice: dict[int, int]) -> int:
        per_prompt: dict[int, int] = {}
        for index, tokens in by_choice.items():
            group = index // self.samples_per_prompt
            per_prompt[group] = max(per_prompt.get(group, 0), tokens)
        return sum(per_prompt.values())


async def merge_streams(streams: list[AsyncIterator[Chunk]]) -> AsyncIterator[tuple[int, Chunk]]:
    """Interleave several chunk streams as (stream index, chunk), closing all on exit."""
    queue: asyncio.Queue[tuple[int, Chunk | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
        except Exception as failure:  # handed to the consumer, which re-raises it
            await queue.put((index, failure))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    running = len(tasks)
    try:
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
