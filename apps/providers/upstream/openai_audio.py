"""Audio on an OpenAI-compatible upstream: speech and transcriptions passed through.

OpenAI's reference: `POST audio/speech` takes JSON and answers the encoded audio itself;
`POST audio/transcriptions` and `audio/translations` take a multipart form with the file and
answer JSON, text or subtitles by `response_format`, or, with `stream=true` on models that
stream, server-sent `transcript.text.*` events. Plugsky passes the client's request on with
the route's model name, and the answer back as it comes: the audio unchanged, a transcript's
text and subtitles unchanged. Billing does not depend on the upstream's usage: a call is
billed by the seconds Plugsky decoded or the characters it was sent, at the route's prices
(apps.billing.pricing), which is what the hold covered.

Errors are the upstream providers' (apps.providers.upstream.http): connection failures,
timeouts, 5xx and 429 are retryable, so the gateway may try the model's next route before any
byte has reached the client; other 4xx are the request's and go back with the upstream's
message and `param`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp

from apps.catalog.entries import CatalogEntry, UpstreamRoute
from apps.providers.errors import ProviderError
from apps.providers.upstream import http
from apps.providers.upstream.openai import read_error

__all__ = ["OpenAIAudioUpstream", "UpstreamTranscript"]

Event = dict[str, Any]


@dataclass(frozen=True)
class UpstreamTranscript:
    """A whole transcript as the upstream answered it: bytes of `content_type`."""

    content: bytes
    content_type: str


class OpenAIAudioUpstream:
    """One audio catalog entry on one OpenAI-compatible route."""

    name = "openai"

    def __init__(
        self, entry: CatalogEntry, route: UpstreamRoute, *, base_url: str, api_key: str
    ) -> None:
        self._route = route
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._upstream = f"The upstream server of {entry.id}"

    @property
    def model(self) -> str:
        return self._route.model

    # -- speech -------------------------------------------------------------------------------

    async def speech(self, body: dict[str, Any]) -> AsyncGenerator[bytes, None]:
        """The encoded audio as the upstream sends it; closing the iterator closes the call."""
        async with http.opened(
            self._base_url,
            "audio/speech",
            body={**body, "model": self._route.model},
            headers=self._headers,
            read_error=read_error,
            upstream=self._upstream,
        ) as response:
            async for data in response.pieces():
                if data:
                    yield data

    # -- transcription ------------------------------------------------------------------------

    async def transcript(
        self, path: str, *, fields: list[tuple[str, str]], file: tuple[str, bytes, str]
    ) -> UpstreamTranscript:
        """The whole answer of `audio/transcriptions` or `audio/translations` (`path`)."""
        async with self._posted(path, fields=fields, file=file) as response:
            content = await response.read()
            return UpstreamTranscript(
                content, response.headers.get("content-type", "application/octet-stream")
            )

    async def transcript_events(
        self, path: str, *, fields: list[tuple[str, str]], file: tuple[str, bytes, str]
    ) -> AsyncGenerator[Event, None]:
        """The upstream's `transcript.text.*` events (with `stream=true` among `fields`)."""
        async with self._posted(path, fields=fields, file=file) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise http.malformed(self._upstream, "a transcript that is not an event stream")
            async for _, data in http.server_sent_events(response):
                if data.strip() == "[DONE]":
                    return
                event = http.loads(data, upstream=self._upstream)
                if isinstance(event, dict) and "error" in event:
                    message, param, code = read_error(event)
                    raise ProviderError(message, status=502, code=code or "upstream_error",
                                        param=param)  # fmt: skip
                yield event

    def _posted(
        self, path: str, *, fields: list[tuple[str, str]], file: tuple[str, bytes, str]
    ) -> AbstractAsyncContextManager[http.UpstreamResponse]:
        """POST the form with `model` set to the route's; the response once it is 2xx."""
        form = aiohttp.FormData()
        form.add_field("model", self._route.model)
        for name, value in fields:
            if name != "model":
                form.add_field(name, value)  # a field sent several times stays several
        filename, content, content_type = file
        form.add_field("file", content, filename=filename, content_type=content_type)
        return http.opened(
            self._base_url,
            path,
            form=form,
            headers=self._headers,
            read_error=read_error,
            upstream=self._upstream,
        )
