"""Serves LocalRoute entries by calling the engine process (apps/engine) over HTTP.

It has LocalProvider's interface, so the gateway cannot tell the two apart; the models, their
weights and runtimes live in the engine, never in web processes or Celery workers.

- One pooled ``httpx.AsyncClient`` per engine and event loop (a client cannot outlive the loop
  it was made on, and Celery tasks run each on a fresh loop). Connecting is bounded by a short
  timeout: an engine that is down answers ``503 engine_unavailable`` at once, never a hang.
- Closing a stream (the gateway does when its client goes away) closes its HTTP response, and
  with it the connection: the engine sees the disconnect and frees the llama.cpp slot.
- Errors arrive as ProviderError fields (``apps.providers.engine_wire``) and are raised as
  ProviderError, before the first chunk with the engine's own status, and mid-stream.
- ``is_available`` is called per request by the catalog from the event loop, so it reads a
  cached copy of the engine's model list and refreshes it in a thread when it gets stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import numpy as np

from apps.catalog.entries import CatalogEntry
from apps.providers import engine_wire as wire
from apps.providers.audio import wire as audio_wire
from apps.providers.errors import ProviderError
from apps.providers.vision.fetch import ImageError
from apps.providers.vision.reading import ImageReading

logger = logging.getLogger(__name__)

Chunk = dict[str, Any]

CONNECT_TIMEOUT_S = 1.0
# Between two chunks of a stream (a request queued behind four busy slots waits for one) and
# for whole embedding or OCR calls.
READ_TIMEOUT_S = 300.0
HEALTH_TIMEOUT_S = 2.0
MODELS_TTL_S = 5.0


class EngineClient:
    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        models_ttl_s: float = MODELS_TTL_S,
    ) -> None:
        self.url = url
        self._address = wire.engine_address(url)
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._health_timeout = httpx.Timeout(HEALTH_TIMEOUT_S, connect=min(connect_timeout_s, 0.5))
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._clients_lock = threading.Lock()
        self._models = _ModelList(self._fetch_models_blocking, ttl_s=models_ttl_s)

    # -- the provider interface ---------------------------------------------------------------

    def is_available(self, entry: CatalogEntry) -> bool:
        models = self._models.current()
        if models is None:
            # The engine has not answered yet (it may be starting): keep configured models
            # listed, so that calls answer 503 engine_unavailable rather than 404.
            return True
        return bool(models.get(entry.id, {}).get("installed"))

    def chat_stream(
        self, entry: CatalogEntry, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[Chunk]:
        """Chunks of a chat generation; closing the iterator stops it in the engine."""
        return self._stream(wire.CHAT_PATH, {"model": entry.id, "isolated": isolated, "body": body})

    def complete_stream(
        self, entry: CatalogEntry, body: dict[str, Any], *, isolated: bool = False
    ) -> AsyncIterator[Chunk]:
        payload = {"model": entry.id, "isolated": isolated, "body": body}
        return self._stream(wire.COMPLETIONS_PATH, payload)

    async def embed(
        self, entry: CatalogEntry, inputs: list[str] | list[list[int]]
    ) -> tuple[np.ndarray, int]:
        body = await self._call(
            wire.EMBEDDINGS_PATH, content=wire.dumps({"model": entry.id, "input": inputs})
        )
        return wire.vectors_from(body)

    async def count_prompt_tokens(self, entry: CatalogEntry, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of a chat generation on `messages` (engine messages, as chat_stream's)."""
        payload = {"model": entry.id, "messages": messages}
        body = await self._call(wire.COUNT_TOKENS_PATH, content=wire.dumps(payload))
        return int(body["prompt_tokens"])

    async def read_image(self, data: bytes, *, detail: str = "auto") -> ImageReading:
        """What the engine's image reader sees; ImageError for an image it cannot use."""
        try:
            body = await self._call(
                wire.READ_IMAGE_PATH,
                content=data,
                params={"detail": detail},
                content_type="application/octet-stream",
            )
        except ProviderError as failure:
            if failure.code == "invalid_image":
                raise ImageError(failure.message) from None
            raise
        return wire.reading_from(body)

    async def probe_audio(self, data: bytes, *, keep: bool) -> tuple[str, int]:
        """(probe id, 16 kHz sample count) of an upload the engine decoded (apps.providers.audio
        .wire); ProviderError `invalid_audio` (400) for audio it cannot decode."""
        body = await self._call(
            audio_wire.PROBE_PATH,
            content=data,
            params={"keep": "true" if keep else "false"},
            content_type="application/octet-stream",
        )
        return str(body["probe_id"]), int(body["sample_count"])

    def transcribe_stream(
        self, entry: CatalogEntry, *, probe_id: str, options: dict[str, str]
    ) -> AsyncIterator[Chunk]:
        """Whisper's chunks for the probed audio (apps.providers.audio.wire); closing the
        iterator stops the transcription."""
        return self._chunks(
            audio_wire.TRANSCRIBE_PATH,
            content=b"",
            params={"model": entry.id, "probe_id": probe_id, **options},
            content_type=audio_wire.PCM_CONTENT_TYPE,
        )

    async def speak_stream(
        self, entry: CatalogEntry, text: str, *, voice: str, speed: float
    ) -> AsyncGenerator[bytes, None]:
        """24 kHz mono int16 PCM as it is synthesized, in whole samples; closing it stops the
        synthesis."""
        payload = {"model": entry.id, "input": text, "voice": voice, "speed": speed}
        request = self._client().build_request(
            "POST", audio_wire.SPEAK_PATH, content=wire.dumps(payload),
            headers={"content-type": "application/json"},
        )  # fmt: skip
        response = await self._send(request)
        try:
            if response.status_code != 200:
                await response.aread()
                raise wire.error_from(_json(response), status=response.status_code)
            # HTTP chunks split samples anywhere: hold back an odd byte for the next chunk.
            odd = b""
            async for data in response.aiter_bytes():
                pcm, odd = _whole_samples(odd + data)
                if pcm:
                    yield pcm
        except httpx.TimeoutException as failure:
            raise _timed_out() from failure
        except httpx.TransportError as failure:
            raise _broken(failure) from failure
        finally:
            await response.aclose()

    # -- health -------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any] | None:
        """The engine's /healthz body, or None when it does not answer."""
        try:
            response = await self._client().get(wire.HEALTH_PATH, timeout=self._health_timeout)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        self._models.store(body.get("models"))
        return body

    def _fetch_models_blocking(self) -> dict[str, Any] | None:
        try:
            with httpx.Client(
                base_url=self._address.base_url,
                transport=httpx.HTTPTransport(uds=self._address.socket_path or None),
                timeout=self._health_timeout,
                trust_env=False,
            ) as client:
                response = client.get(wire.HEALTH_PATH)
                response.raise_for_status()
                models: dict[str, Any] = response.json()["models"]
                return models
        except (httpx.HTTPError, ValueError, KeyError):
            logger.warning("the engine at %s does not answer", self.url)
            return None

    # -- transport ----------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            client = self._clients.get(loop)
            if client is None:
                for gone in [known for known in self._clients if known.is_closed()]:
                    del self._clients[gone]  # its connections died with their loop
                client = self._clients[loop] = self._new_client()
            return client

    def _new_client(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(
            uds=self._address.socket_path or None,
            # Every stream holds a connection for its whole length: never queue them here.
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64, keepalive_expiry=10
            ),
        )
        return httpx.AsyncClient(
            base_url=self._address.base_url,
            transport=transport,
            timeout=self._timeout,
            trust_env=False,
        )

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._client().send(request, stream=True)
        except httpx.TimeoutException as failure:
            if isinstance(failure, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise _unavailable() from failure
            raise _timed_out() from failure
        except httpx.TransportError as failure:
            raise _unavailable() from failure

    async def _call(
        self,
        path: str,
        *,
        content: bytes,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        request = self._client().build_request(
            "POST", path, content=content, params=params, headers={"content-type": content_type}
        )
        response = await self._send(request)
        try:
            await response.aread()
        except httpx.TimeoutException as failure:
            raise _timed_out() from failure
        except httpx.TransportError as failure:
            raise _broken(failure) from failure
        finally:
            await response.aclose()
        body = _json(response)
        if response.status_code != 200:
            raise wire.error_from(body, status=response.status_code)
        return body

    def _stream(self, path: str, payload: dict[str, Any]) -> AsyncGenerator[Chunk, None]:
        return self._chunks(path, content=wire.dumps(payload))

    async def _chunks(
        self,
        path: str,
        *,
        content: bytes,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> AsyncGenerator[Chunk, None]:
        """The chunks of an NDJSON stream (engine_wire), raising its errors."""
        request = self._client().build_request(
            "POST", path, content=content, params=params, headers={"content-type": content_type}
        )
        response = await self._send(request)
        try:
            if response.status_code != 200:
                await response.aread()
                raise wire.error_from(_json(response), status=response.status_code)
            async for text in response.aiter_lines():
                if not text:
                    continue
                message = json.loads(text)
                if "chunk" in message:
                    yield message["chunk"]
                elif "error" in message:
                    raise wire.error_from(message, status=500)
                elif message.get("done"):
                    return
            raise _broken("the engine ended the stream before its end")
        except httpx.TimeoutException as failure:
            raise _timed_out() from failure
        except httpx.TransportError as failure:
            raise _broken(failure) from failure
        finally:
            # Closing an unfinished response closes its connection: the engine stops at once.
            await response.aclose()


class _ModelList:
    """The engine's model list, refreshed in a thread when stale so that readers never wait.

    Only the very first read of a process waits, for one look-up bounded by the health timeout
    (on loopback: a millisecond, or an immediate refusal while the engine is down).
    """

    def __init__(self, fetch: Any, *, ttl_s: float) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._models: dict[str, Any] | None = None
        self._checked_at: float | None = None
        self._lock = threading.Lock()
        self._is_refreshing = False

    def current(self) -> dict[str, Any] | None:
        if self._checked_at is None:
            with self._lock:
                if self._checked_at is None:
                    self.store(self._fetch())
        elif time.monotonic() - self._checked_at > self._ttl_s:
            self._refresh_in_background()
        return self._models

    def store(self, models: dict[str, Any] | None) -> None:
        # An engine that stopped answering keeps its last known list: its calls get a 503.
        if models is not None:
            self._models = models
        self._checked_at = time.monotonic()

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._is_refreshing:
                return
            self._is_refreshing = True

        def refresh() -> None:
            try:
                self.store(self._fetch())
            finally:
                self._is_refreshing = False

        threading.Thread(target=refresh, name="engine-models", daemon=True).start()


def _whole_samples(data: bytes) -> tuple[bytes, bytes]:
    """(the int16 samples in `data`, the byte left over)."""
    cut = len(data) - len(data) % 2
    return data[:cut], data[cut:]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _unavailable() -> ProviderError:
    return ProviderError(
        "The model engine is not reachable; try again shortly.",
        status=503,
        code="engine_unavailable",
    )


def _timed_out() -> ProviderError:
    return ProviderError("The model engine did not answer in time.", status=504, code="timeout")


def _broken(reason: object) -> ProviderError:
    logger.warning("engine stream broken: %s", reason)
    return ProviderError(
        "The connection to the model engine was lost.", status=502, code="engine_error"
    )
