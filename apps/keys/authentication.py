"""Authenticate `Authorization: Bearer sk-live-…` (or Anthropic's `x-api-key: sk-live-…`) for /v1.

The identity of a key is cached in Redis (shared by every process) for a short TTL. Revocation
writes a tombstone over it, so revoking takes effect on the very next request everywhere.
`last_used_at` is written at most once per key per API_KEY_LAST_USED_RESOLUTION_S.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisSerializer
from django.utils import timezone

from apps.keys import secrets
from apps.keys.cache import REVOKED, UNKNOWN, identity_cache_key, touched_cache_key
from apps.keys.models import APIKey
from plugsky_site.db import db_call
from plugsky_site.redis_pool import redis_pipeline

_MISSING_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). Create one in your Plugsky dashboard."
)

# An admin key works only on the organization admin API; say so rather than "incorrect key".
_ADMIN_KEY_MESSAGE = (
    "Admin keys (sk-admin-…) authenticate only the organization admin API "
    "(/v1/organization/…). Use an API key (sk-live-…) here."
)


# How Django's RedisCache stores values (pickles, and integers as they are).
_CACHE_VALUES = RedisSerializer()


class InvalidAPIKey(Exception):
    """The request carries no usable API key; the message is safe to show the caller."""


@dataclass(frozen=True)
class KeyIdentity:
    key_id: int
    organization_id: int
    digest: str
    expires_at: datetime | None
    # Catalog ids the key may call; empty: every model.
    allowed_models: tuple[str, ...] = ()

    def may_use(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models


def _presented_key(authorization: str | None, api_key: str | None) -> str:
    # Anthropic's SDKs send the key as `x-api-key`; it names the key alone, without a scheme.
    if api_key and api_key.strip():
        return api_key.strip()
    if not authorization:
        raise InvalidAPIKey(_MISSING_MESSAGE)
    scheme, _, raw_key = authorization.strip().partition(" ")
    raw_key = raw_key.strip()
    if scheme.lower() != "bearer" or not raw_key:
        raise InvalidAPIKey(_MISSING_MESSAGE)
    return raw_key


def _incorrect(raw_key: str) -> InvalidAPIKey:
    shown = f"{raw_key[:8]}…{raw_key[-4:]}" if len(raw_key) > 12 else "(hidden)"
    return InvalidAPIKey(
        f"Incorrect API key provided: {shown}. "
        "You can find your API keys in your Plugsky dashboard."
    )


def _load_identity(digest: str) -> KeyIdentity | str:
    row = (
        APIKey.objects.filter(digest=digest)
        .values_list(
            "pk", "organization_id", "digest", "expires_at", "revoked_at", "allowed_models"
        )
        .first()
    )
    if row is None:
        return UNKNOWN
    key_id, organization_id, stored_digest, expires_at, revoked_at, allowed_models = row
    if revoked_at is not None:
        return REVOKED
    return KeyIdentity(
        key_id, organization_id, stored_digest, expires_at, tuple(allowed_models or ())
    )


async def authenticate_async(
    authorization: str | None, *, api_key: str | None = None
) -> KeyIdentity:
    """The identity behind an `x-api-key` or else an Authorization header, or InvalidAPIKey.

    On the event loop: the cached identity comes in one Redis round trip; the database is read
    only for a key not cached, and written once per resolution window (`last_used_at`), each in
    `db_call`, which hands its connection back at once (a stream must not hold one).
    """
    raw_key = _presented_key(authorization, api_key)
    if raw_key.startswith(secrets.ADMIN_PREFIX):
        raise InvalidAPIKey(_ADMIN_KEY_MESSAGE)
    if not secrets.is_well_formed(raw_key):
        raise _incorrect(raw_key)
    digest = secrets.digest(raw_key)
    identity, is_first_use = await _cached_identity(digest)
    if identity is None:
        identity = await db_call(_loaded_identity, digest)
    if identity == REVOKED:
        raise InvalidAPIKey("This API key has been revoked. Create a new key in your dashboard.")
    if not isinstance(identity, KeyIdentity) or not secrets.matches(raw_key, identity.digest):
        raise _incorrect(raw_key)
    now = timezone.now()
    if identity.expires_at is not None and identity.expires_at <= now:
        raise InvalidAPIKey("This API key has expired. Create a new key in your dashboard.")
    if is_first_use:  # recorded once per resolution window, not on every request
        await db_call(_mark_used, identity.key_id, now)
    return identity


def _loaded_identity(digest: str) -> KeyIdentity | str:
    identity = _load_identity(digest)
    cache.add(identity_cache_key(digest), identity, timeout=settings.API_KEY_CACHE_TTL_S)
    return identity


def _mark_used(key_id: int, now: datetime) -> None:
    APIKey.objects.filter(pk=key_id).update(last_used_at=now)


async def _cached_identity(digest: str) -> tuple[Any, bool]:
    """In one Redis round trip: the cached identity of `digest` (None: not cached), and whether
    this is the key's first use in its API_KEY_LAST_USED_RESOLUTION_S window.

    The cache's own client took two round trips and, per call, a client object and pickling of
    its own (~2 ms of the web process's CPU per request, profiled); the values are still the
    cache's, written by `cache.add`/`cache.set` and read back with its serializer.
    """

    def queue(pipeline: Any) -> None:
        pipeline.get(cache.make_key(identity_cache_key(digest)))
        pipeline.set(
            cache.make_key(touched_cache_key(digest)),
            1,
            nx=True,
            ex=settings.API_KEY_LAST_USED_RESOLUTION_S,
        )

    url = settings.CACHES["default"]["LOCATION"]
    cached, is_first_use = await redis_pipeline(queue, url=url)
    return (None if cached is None else _CACHE_VALUES.loads(cached)), bool(is_first_use)
