"""POST /v1/embeddings: strings or token arrays, float or base64 (little-endian float32)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from django.http import HttpResponseBase

from apps.catalog.entries import CatalogEntry
from apps.gateway import errors
from apps.gateway.metering import meter_open
from apps.gateway.protocol import MAX_EMBEDDING_INPUTS, EmbeddingRequest
from apps.gateway.serving.common import CallContext, api_error_from, priced_response, resolve_model
from apps.gateway.serving.generation import Tally, close_meter_safely, settle_failure
from apps.providers.errors import ProviderError
from apps.providers.registry import provider_for

ENDPOINT = "embeddings"
EmbeddingInputs = list[str] | list[list[int]]


async def create(request: EmbeddingRequest, ctx: CallContext) -> HttpResponseBase:
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    inputs = _inputs(request)
    _check_dimensions(request, entry)
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=ENDPOINT,
        entry=entry,
        max_prompt_tokens=sum(_token_bound(item) for item in inputs),
        max_completion_tokens=0,
        is_stream=False,
        end_user=request.user or "",
        is_tester=ctx.is_tester,
    )
    tally = Tally()
    try:
        vectors, prompt_tokens = await provider_for(entry).embed(entry, inputs)
    except BaseException as failure:
        await settle_failure(meter, tally, failure)
        if isinstance(failure, ProviderError):
            raise api_error_from(failure) from None
        raise
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
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return priced_response(body, cost)


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


def _token_bound(item: str | list[int]) -> int:
    return len(item) + 2 if isinstance(item, list) else len(item.encode()) + 2


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
