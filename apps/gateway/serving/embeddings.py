"""POST /v1/embeddings: strings or token arrays, float or base64 (little-endian float32)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from apps.billing.pricing import MICROS_PER_DOLLAR
from apps.catalog.entries import CatalogEntry
from apps.gateway.metering import Meter, meter_open
from apps.gateway.serving.common import CallContext, Priced, end_user_of, resolve_model
from apps.gateway.serving.generation import close_meter_safely, settled_on_failure
from apps.protocol import errors
from apps.protocol.openai import EmbeddingRequest
from apps.providers.base import Provider, Usage
from apps.providers.registry import serving_provider

ENDPOINT = "embeddings"


async def create(request: EmbeddingRequest, ctx: CallContext) -> Priced:
    entry = resolve_model(request.model, endpoint=ENDPOINT)
    _check_dimensions(request, entry)
    end_user = end_user_of(request.user)
    provider = await serving_provider(entry)
    meter = await meter_open(
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        api_key_id=ctx.api_key_id,
        endpoint=ENDPOINT,
        entry=entry,
        max_prompt_tokens=provider.prompt_token_bound(request),
        max_completion_tokens=0,
        is_stream=False,
        end_user=end_user,
        is_tester=ctx.is_tester,
    )
    work = _respond(provider, request, entry, meter)
    return await settled_on_failure(meter, Usage(), work)  # a failed call used nothing


async def _respond(
    provider: Provider, request: EmbeddingRequest, entry: CatalogEntry, meter: Meter
) -> Priced:
    embeddings = await provider.embed(request)
    usage = embeddings.usage
    cost = await close_meter_safely(meter, usage, status=200)
    vectors = _shorten(embeddings.vectors, request.dimensions)
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, request.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": entry.id,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "total_tokens": usage.prompt_tokens,
            "cost": cost / MICROS_PER_DOLLAR,  # as on every response (see the README)
        },
    }
    return Priced(body, cost)


def _check_dimensions(request: EmbeddingRequest, entry: CatalogEntry) -> None:
    limit = entry.dimensions
    if request.dimensions is not None and limit is not None and request.dimensions > limit:
        raise errors.invalid_value(
            f"'dimensions' must be at most {limit} for `{entry.id}`.",
            param="dimensions",
        )


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
