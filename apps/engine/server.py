"""The engine's HTTP face: a small ASGI app around LocalProvider (see wire.py for the protocol).

Plain ASGI, no framework: five endpoints, and streams whose cancellation must be exact. A
stream's client going away is noticed by waiting on ``receive()`` beside the stream (uvicorn
silently drops writes to a closed connection, so writing alone would not notice); closing the
provider's stream then makes llama.cpp stop and free the slot at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from apps.catalog.entries import CatalogEntry
from apps.engine import audio
from apps.providers import engine_wire as wire
from apps.providers.audio import wire as audio_wire
from apps.providers.audio.provider import AUDIO_RUNTIMES, AudioProvider
from apps.providers.errors import ProviderError
from apps.providers.local_provider import LocalProvider
from apps.providers.vision.fetch import ImageError

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Chunk = dict[str, Any]

MAX_BODY_BYTES = 64 * 1024 * 1024
_GENERATION_RUNTIMES = {"llama"}


class _Rejected(Exception):
    """A request refused before the provider saw it, with the ProviderError to answer."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.message)
        self.error = error


class EngineApp:
    """Hosts one LocalProvider for the entries of the catalog that run on the local engine."""

    def __init__(
        self,
        provider: LocalProvider | None = None,
        entries: Mapping[str, CatalogEntry] | None = None,
        *,
        preload: tuple[str, ...] = (),
    ) -> None:
        self.provider = provider or LocalProvider()
        self.audio = AudioProvider()
        self._entries = dict(entries) if entries is not None else None
        self._preload = preload

    @property
    def entries(self) -> dict[str, CatalogEntry]:
        if self._entries is None:
            from apps.catalog.selectors import configured_models

            self._entries = {
                entry.id: entry for entry in configured_models() if entry.local_route is not None
            }
        return self._entries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = {
            ("GET", wire.HEALTH_PATH): self._health,
            ("POST", wire.CHAT_PATH): self._chat,
            ("POST", wire.COMPLETIONS_PATH): self._complete,
            ("POST", wire.EMBEDDINGS_PATH): self._embed,
            ("POST", wire.READ_IMAGE_PATH): self._read_image,
            ("POST", wire.COUNT_TOKENS_PATH): self._count_tokens,
            ("POST", audio_wire.PROBE_PATH): self._probe,
            ("POST", audio_wire.TRANSCRIBE_PATH): self._transcribe,
            ("POST", audio_wire.SPEAK_PATH): self._speak,
        }.get((scope["method"], scope["path"]))
        if handler is None:
            error = ProviderError(f"No engine endpoint {scope['path']}", status=404)
            await _json(send, 404, wire.error_body(error))
            return
        try:
            await handler(scope, receive, send)
        except _Rejected as rejected:
            await _json(send, rejected.error.status, wire.error_body(rejected.error))

    # -- endpoints ----------------------------------------------------------------------------

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _json(send, 200, self.health())

    def health(self) -> dict[str, Any]:
        models = {}
        for model_id, entry in self.entries.items():
            host = self._host(entry)
            models[model_id] = {
                "installed": host.is_available(entry),
                "loaded": host.is_loaded(entry),
            }
        return {"status": "ok", "running": self.provider.running(), "models": models}

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        payload = await _json_body(receive)
        entry = self._entry(payload, generation=True)
        stream = self.provider.chat_stream(
            entry, _body(payload), isolated=bool(payload.get("isolated"))
        )
        await _stream_response(stream, receive, send)

    async def _complete(self, scope: Scope, receive: Receive, send: Send) -> None:
        payload = await _json_body(receive)
        entry = self._entry(payload, generation=True)
        stream = self.provider.complete_stream(
            entry, _body(payload), isolated=bool(payload.get("isolated"))
        )
        await _stream_response(stream, receive, send)

    async def _embed(self, scope: Scope, receive: Receive, send: Send) -> None:
        payload = await _json_body(receive)
        entry = self._entry(payload, generation=False)
        inputs = payload.get("input")
        if not isinstance(inputs, list):
            raise _Rejected(ProviderError("`input` must be a list", status=400, param="input"))
        try:
            vectors, prompt_tokens = await self.provider.embed(entry, inputs)
        except ProviderError as failure:
            await _json(send, failure.status, wire.error_body(failure))
            return
        await _json(send, 200, wire.vectors_body(vectors, prompt_tokens))

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        payload = await _json_body(receive)
        entry = self._entry(payload, generation=True)
        messages = payload.get("messages")
        if not isinstance(messages, list):
            error = ProviderError("`messages` must be a list", status=400, param="messages")
            raise _Rejected(error)
        try:
            prompt_tokens = await self.provider.count_prompt_tokens(entry, messages)
        except ProviderError as failure:
            await _json(send, failure.status, wire.error_body(failure))
            return
        await _json(send, 200, {"prompt_tokens": prompt_tokens})

    async def _read_image(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await _read_body(receive)
        query = parse_qs(scope.get("query_string", b"").decode())
        detail = (query.get("detail") or ["auto"])[0]
        try:
            reading = await self.provider.read_image(data, detail=detail)
        except ImageError as failure:
            error = ProviderError(failure.message, status=400, code="invalid_image")
            await _json(send, 400, wire.error_body(error))
            return
        except ProviderError as failure:
            await _json(send, failure.status, wire.error_body(failure))
            return
        await _json(send, 200, wire.reading_body(reading))

    async def _probe(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        try:
            answer = await audio.probe(self.audio, query, await _read_body(receive))
        except ProviderError as failure:
            raise _Rejected(failure) from None
        await _json(send, 200, answer)

    async def _transcribe(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        entry = self._audio_entry((query.get("model") or [""])[0])
        await _read_body(receive)  # none: the audio is the probe's
        try:
            stream = audio.transcription(self.audio, entry, query)
        except ProviderError as failure:
            raise _Rejected(failure) from None
        await _stream_response(stream, receive, send)

    async def _speak(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            request = audio.speech_request(await _read_body(receive))
        except ProviderError as failure:
            raise _Rejected(failure) from None
        await audio.speak(self.audio, self._audio_entry(request.model), request, receive, send)

    def _host(self, entry: CatalogEntry) -> LocalProvider | AudioProvider:
        """What loads and runs the entry's model: audio models have their own."""
        return self.audio if _is_audio(entry) else self.provider

    def _audio_entry(self, model_id: str) -> CatalogEntry:
        entry = self.entries.get(model_id)
        if entry is None or not _is_audio(entry):
            raise _Rejected(
                ProviderError(
                    f"The engine serves no audio model `{model_id}`.",
                    status=404,
                    code="model_not_found",
                    param="model",
                )
            )
        return entry

    def _entry(self, payload: dict[str, Any], *, generation: bool) -> CatalogEntry:
        model_id = payload.get("model")
        entry = self.entries.get(model_id) if isinstance(model_id, str) else None
        if entry is None:
            raise _Rejected(
                ProviderError(
                    f"The engine does not serve the model `{model_id}`.",
                    status=404,
                    code="model_not_found",
                    param="model",
                )
            )
        route = entry.local_route
        assert route is not None  # the engine lists local entries only
        if (route.runtime in _GENERATION_RUNTIMES) != generation or _is_audio(entry):
            raise _Rejected(
                ProviderError(
                    f"The model `{model_id}` does not serve this endpoint.",
                    status=400,
                    code="model_not_supported",
                    param="model",
                )
            )
        return entry

    # -- lifespan -----------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for model_id in self._preload_ids():
                    asyncio.ensure_future(self._load(model_id))  # noqa: RUF006
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _preload_ids(self) -> list[str]:
        if "all" in self._preload:
            return [
                model_id
                for model_id, entry in self.entries.items()
                if self._host(entry).is_available(entry)
            ]
        return [model_id for model_id in self._preload if model_id in self.entries]

    async def _load(self, model_id: str) -> None:
        entry = self.entries[model_id]
        try:
            await self._host(entry).load(entry)
            logger.info("preloaded %s", model_id)
        except ProviderError as failure:
            logger.error("could not preload %s: %s", model_id, failure.message)


def _is_audio(entry: CatalogEntry) -> bool:
    route = entry.local_route
    return route is not None and route.runtime in AUDIO_RUNTIMES


async def _stream_response(stream: AsyncIterator[Chunk], receive: Receive, send: Send) -> None:
    """Stream `stream` as NDJSON until it ends or the client goes away, then close it."""
    pump = asyncio.ensure_future(_pump(stream, send))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, gone):
            task.cancel()
        await asyncio.gather(pump, gone, return_exceptions=True)
        # Frees the llama.cpp slot now, not when the generation would have ended.
        await stream.aclose()  # type: ignore[attr-defined]
    if not pump.cancelled() and pump.exception() is not None:
        logger.error("engine stream failed", exc_info=pump.exception())


async def _pump(stream: AsyncIterator[Chunk], send: Send) -> None:
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        await _start_stream(send)
        await send({"type": "http.response.body", "body": wire.DONE_LINE})
        return
    except ProviderError as failure:  # before any output: answer with its own status
        await _json(send, failure.status, wire.error_body(failure))
        return
    except Exception:
        logger.exception("engine stream failed before its first chunk")
        await _json(send, 500, wire.error_body(_internal_error()))
        return
    await _start_stream(send)
    await _send_line(send, {"chunk": first})
    try:
        async for chunk in stream:
            await _send_line(send, {"chunk": chunk})
    except ProviderError as failure:
        await send({"type": "http.response.body", "body": wire.line(wire.error_body(failure))})
        return
    except Exception:
        logger.exception("engine stream failed")
        body = wire.line(wire.error_body(_internal_error()))
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.body", "body": wire.DONE_LINE})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _start_stream(send: Send) -> None:
    headers = [(b"content-type", wire.NDJSON.encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _send_line(send: Send, value: Any) -> None:
    await send({"type": "http.response.body", "body": wire.line(value), "more_body": True})


async def _json(send: Send, status: int, body: Any) -> None:
    data = wire.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Rejected(ProviderError("The client went away.", status=499))
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            raise _Rejected(ProviderError("The request body is too large.", status=413))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json_body(receive: Receive) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        payload = json.loads(await _read_body(receive))
        if isinstance(payload, dict):
            return payload
    raise _Rejected(ProviderError("The request body must be a JSON object.", status=400))


def _body(payload: dict[str, Any]) -> dict[str, Any]:
    body = payload.get("body")
    if not isinstance(body, dict):
        raise _Rejected(ProviderError("`body` must be a JSON object.", status=400, param="body"))
    return body


def _internal_error() -> ProviderError:
    return ProviderError("The engine failed unexpectedly.", status=500, code="engine_error")
