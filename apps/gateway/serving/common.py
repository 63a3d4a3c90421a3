"""What every serving module shares: the call context, model resolution, provider errors, and
what a call returns (`Priced` or a `ChunkStream`; views turn them into HTTP)."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from apps.billing.pricing import MICROS_PER_DOLLAR
from apps.catalog.entries import CatalogEntry, Kind
from apps.catalog.selectors import catalog_model
from apps.keys.authentication import KeyIdentity
from apps.protocol import errors
from apps.providers.base import Chunk, Usage
from apps.providers.errors import ProviderError

_KIND_ENDPOINTS = {
    Kind.CHAT: {"chat.completions", "completions"},
    Kind.COMPLETION: {"completions"},
    Kind.EMBEDDING: {"embeddings"},
    # Audio models are served by the audio endpoints only (apps/gateway/serving/audio.py).
    Kind.TRANSCRIPTION: set(),
    Kind.SPEECH: set(),
}
MAX_USER_LENGTH = 256
_ENDPOINT_PATHS = {
    "chat.completions": "v1/chat/completions",
    "completions": "v1/completions",
    "embeddings": "v1/embeddings",
}


@dataclass(frozen=True)
class CallContext:
    """Who is calling, and as which request."""

    request_id: str
    organization_id: int
    api_key_id: int | None
    is_tester: bool = False
    created: int = field(default_factory=lambda: int(time.time()))


def resolve_model(model_id: str, *, endpoint: str) -> CatalogEntry:
    """The catalog entry for `model_id`, or a 404/400 in OpenAI's envelope."""
    entry = catalog_model(model_id)
    if entry is None:
        raise errors.model_not_found(model_id)
    if endpoint not in _KIND_ENDPOINTS[entry.kind]:
        raise errors.invalid_value(
            f"The model `{entry.id}` is a {entry.kind.value} model and is not supported on "
            f"{_ENDPOINT_PATHS[endpoint]}.",
            param="model",
            code="model_not_supported",
        )
    return entry


def model_access_check(model_id: str, *, identity: KeyIdentity) -> None:
    """403 when the API key is limited to other models (set in the dashboard).

    Unknown ids pass through, so that resolve_model answers them with its usual 404. The 403
    mirrors OpenAI's permission errors: type invalid_request_error, here code model_not_allowed.
    """
    entry = catalog_model(model_id)
    if entry is None or identity.may_use(entry.id):
        return
    raise errors.APIError(
        f"This API key is not allowed to use the model `{entry.id}`. It may use: "
        f"{', '.join(identity.allowed_models)}. Change the key's models in your Plugsky dashboard.",
        status=403,
        code="model_not_allowed",
        param="model",
    )


def end_user_of(user: str | None) -> str:
    """The request's `user` as it is recorded, or a 400 if it cannot be recorded as sent.

    The same rule on every endpoint: at most MAX_USER_LENGTH characters (OpenAI's limit, and
    UsageRecord.end_user's column), and no NUL, which PostgreSQL cannot store in text. Refused
    rather than altered: the customer matches our usage records to their users by this id.
    """
    if user is None:
        return ""
    if len(user) > MAX_USER_LENGTH:
        raise errors.invalid_value(
            f"Invalid 'user': string should have at most {MAX_USER_LENGTH} characters.",
            param="user",
            code="invalid_value",
        )
    if "\x00" in user:
        raise errors.invalid_value(
            "Invalid 'user': the string must not contain NUL characters (\\u0000).",
            param="user",
            code="invalid_value",
        )
    return user


def output_limit_check(limit: int | None, entry: CatalogEntry, *, param: str) -> int:
    """The most tokens one choice may generate: `limit`, or all the model allows (its context
    window, or the smaller output limit some upstream models have).

    A limit above that is a 400, as OpenAI answers it, not silently lowered.
    """
    most = min(entry.context_length, entry.max_output_tokens or entry.context_length)
    if limit is None:
        return most
    if limit > most:
        raise errors.invalid_value(
            f"{param} is too large: {limit}. This model supports at most "
            f"{most} completion tokens, whereas you provided {limit}.",
            param=param,
            code="invalid_value",
        )
    return limit


def api_error_from(failure: ProviderError) -> errors.APIError:
    """The client's error for a provider's; a backend's wait hint (a 429's) as Retry-After."""
    wait_s = failure.retry_after_s
    headers = {"Retry-After": str(max(1, math.ceil(wait_s)))} if wait_s is not None else None
    return errors.APIError(
        failure.message,
        status=failure.status,
        type=failure.type,
        code=failure.code,
        param=failure.param,
        headers=headers,
    )


@dataclass(frozen=True)
class Priced:
    """The body of a finished, non-streamed call and what it was charged (micro-dollars)."""

    body: dict[str, Any]
    cost_micros: int


class ChunkStream:
    """The OpenAI chunks of a streamed call, its first already produced (see `generation`).

    Closing it early (a client gone) settles the call for what was generated. The usage chunk,
    when the request asked for it, carries the charged cost; `usage` is what the call has used
    so far, for translations that must report input tokens before the end (Anthropic's
    `message_start`): the prompt is counted by the time the first chunk exists.
    """

    def __init__(self, chunks: AsyncGenerator[dict[str, Any], None], usage: Usage) -> None:
        self._chunks = chunks
        self.usage = usage

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()


def usage_body(usage: Usage, cost_micros: int) -> dict[str, Any]:
    """OpenAI's usage object, with what the call was charged in dollars (Plugsky's `cost`)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "cost": cost_micros / MICROS_PER_DOLLAR,
    }


async def stream_close(chunks: AsyncIterator[Chunk]) -> None:
    """Close a provider's stream, which cancels its work upstream if it is still running."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
