"""The interface between the serving core and every backend that runs models.

A provider takes the *validated* OpenAI request (apps.protocol.openai) for one catalog entry and
gives back OpenAI-shaped data; everything that is specific to a backend (the local engine's
llama.cpp bodies and grammars, a vendor's native API, its usage fields) stays behind it. The
gateway keeps the rest: resolve the route, check access, hold credit, stream, settle.

Usage is reported by updating the `Usage` the gateway passes in, not by chunks, so that a call
cut short (a client gone, an upstream failing mid-stream) is billed for what was generated: a
provider keeps it current as the work goes (exact counts where the backend reports them as it
goes, a count of the text so far otherwise) and sets the backend's own figures when they arrive.

Errors are `ProviderError`s. One raised before the first chunk is answered with its own status
(and, when `retryable`, the gateway may try again or fall back to the next route); after the first
chunk it ends the stream with an error event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

# One `chat.completion.chunk` (or `text_completion`) object as OpenAI streams it. Only `choices`
# is read: the gateway writes its own envelope (id, created, model, system_fingerprint).
Chunk = dict[str, Any]


@dataclass
class Usage:
    """What one call has used so far; at the end of the stream, what it used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens, as OpenAI counts them
    reasoning_tokens: int = 0  # part of completion_tokens
    provider: str = ""  # the `name` of the provider that answered
    route_index: int = 0  # which of the entry's routes answered: its prices apply
    upstream_model: str = ""  # the backend's name for the model that answered
    upstream_request_id: str = ""  # the backend's id for the call, where it gives one
    exact: bool = False  # counted by the backend, not estimated from the text
    extra: dict[str, int] = field(default_factory=dict)  # e.g. cache writes a vendor bills apart


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # float32, one row per input, in input order
    usage: Usage


class Provider(Protocol):
    """One catalog entry on one of its routes: the local engine, an OpenAI-compatible server,
    or a vendor's API. Made per call by `apps.providers.registry.provider_for` (cheap: the
    connection pools behind it are shared per upstream and process); methods are reentrant."""

    name: str  # "local", "openai", "anthropic", "gemini": recorded with every call

    def is_available(self) -> bool:
        """Whether the route can serve now (installed, configured). Called per request from
        the event loop: cheap, never blocking."""
        ...

    def prompt_token_bound(
        self, request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    ) -> int:
        """An upper bound on the prompt tokens of the request over all its prompts or inputs
        (each counted once, however large `n` is), including what this backend adds:
        templates, tool instructions, images, an embedder's framing. Each prompt or input
        longer than the context window is refused unbilled, so the bound of each may be capped
        there. The gateway holds credit for it; keep it cheap (no network)."""
        ...

    def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        """The chunks of a chat completion, its `n` choices interleaved by `index`, also for
        a non-streamed request (the gateway assembles the message). No choice may generate
        more than `max_tokens` (the hold covers exactly that). Closing the iterator cancels
        the work upstream."""
        ...

    def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        """The chunks of a legacy completion; choice `index` is prompt * n + sample."""
        ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """One vector per input at the model's full width (the gateway shortens them to
        `dimensions` and encodes them); usage as the backend counted it."""
        ...
