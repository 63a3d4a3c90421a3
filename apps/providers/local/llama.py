"""One GGUF model on llama.cpp (through xllamacpp), served to asyncio without blocking the loop.

xllamacpp's calls block until generation ends, so each request runs in a thread of a pool that is
wider than the number of llama.cpp slots: every slot can be busy while one more request waits in
llama.cpp's own queue. Streaming tokens arrive on a callback in that thread and cross to the event
loop through ``call_soon_threadsafe``; the callback's return value is how a departed client's
generation gets cancelled and its slot freed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from apps.providers.local.errors import EngineError, check_token_ids
from apps.providers.local.gguf import GGUFError, gguf_vocab_size
from apps.providers.local.weights import WeightsError, WeightSource, resolve_weights

__all__ = ["LlamaRuntime"]

logger = logging.getLogger(__name__)

# llama.cpp rounds each slot's context up to a multiple of this (measured: n_ctx=1000 with three
# slots gives 512 tokens per slot).
_SLOT_CONTEXT_ALIGNMENT = 256
_CHAT = "handle_chat_completions"
_COMPLETIONS = "handle_completions"
_QUOTED_NAME = re.compile(r"""['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")
_LEADING_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s")
_MESSAGE_WORDS = re.compile(r"\bmessages?\b")
_MESSAGE_FIELDS = {"content", "role", "name", "tool_calls", "tool_call_id"}
_DONE = object()
# llama.cpp's seed is a uint32 in which 0xFFFFFFFF (LLAMA_DEFAULT_SEED) means "pick one at
# random": seeds are reduced modulo that value, so every seed is reproducible and 0 .. 2**32 - 2
# keep their meaning.
_SEED_MODULUS = 0xFFFFFFFF
# llama_token is an int32: a larger id would wrap around to a real token on the way in.
_MAX_TOKEN_ID = 2**31 - 1
# Token counts llama.cpp reads as int32 (2**32 - 1 would become -1, "no limit").
_CONTEXT_BOUNDED = ("max_tokens", "n_predict", "repeat_last_n")
# llama.cpp answers its tokenizer endpoints from its HTTP thread, without waiting for a slot.
_TOKENIZER_TIMEOUT_S = 30.0

Chunk = dict[str, Any]


class LlamaRuntime:
    """A lazily loaded, thread-safe ``xllamacpp.Server`` with an async OpenAI-shaped API.

    ``weights`` is a verified file path, or a ``WeightSource`` that is resolved (and hashed) on
    first use. ``n_ctx`` is the total context, split by llama.cpp across ``n_parallel`` slots.
    """

    def __init__(
        self,
        weights: WeightSource | str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_parallel: int = 1,
        n_threads: int | None = None,
        model_name: str | None = None,
        load_retry_after_s: float = 30.0,
    ) -> None:
        if n_ctx < 1 or n_parallel < 1:
            raise ValueError("n_ctx and n_parallel must be positive")
        self._weights = weights
        self._n_ctx = n_ctx
        self._n_parallel = n_parallel
        self._n_threads = n_threads
        self._model_name = model_name or _display_name(weights)
        self._load_retry_after_s = load_retry_after_s
        self._executor = ThreadPoolExecutor(
            max_workers=n_parallel + 1, thread_name_prefix="llama-runtime"
        )
        self._load_lock = threading.Lock()
        self._server: Any = None
        # llama.cpp's own HTTP server, on the private socket (see _params): its tokenizer.
        self._private_http: httpx.Client | None = None
        self._n_vocab: int | None = None
        self._socket_dir_cleanup: weakref.finalize[Any, Any] | None = None
        self._last_failure: tuple[float, EngineError] | None = None
        self._is_closed = False
        self._running = 0
        self._running_lock = threading.Lock()

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_parallel(self) -> int:
        return self._n_parallel

    @property
    def n_ctx_per_slot(self) -> int:
        """The context one request can use: llama.cpp's share of ``n_ctx`` for each slot."""
        share = self._n_ctx // self._n_parallel
        return -(-share // _SLOT_CONTEXT_ALIGNMENT) * _SLOT_CONTEXT_ALIGNMENT

    @property
    def n_vocab(self) -> int | None:
        """Tokens in the model's vocabulary, once loaded (None if the GGUF did not say)."""
        return self._n_vocab

    @property
    def is_loaded(self) -> bool:
        return self._server is not None

    @property
    def running(self) -> int:
        """Generations inside llama.cpp now (busy slots and queued requests); 0 when idle."""
        return self._running

    async def load(self) -> None:
        """Load the model now (it otherwise loads on the first request) and keep it warm."""
        await self._ready_server()

    async def chat(self, body: Mapping[str, Any]) -> Chunk:
        """A chat completion for an OpenAI-shaped body the caller has already validated."""
        return await self._complete_once(_CHAT, body, prompt_param="messages")

    async def complete(self, body: Mapping[str, Any]) -> Chunk:
        """A legacy text completion for an already validated body."""
        return await self._complete_once(_COMPLETIONS, body, prompt_param="prompt")

    def chat_stream(self, body: Mapping[str, Any]) -> AsyncGenerator[Chunk, None]:
        """Chat completion chunks as llama.cpp produces them; closing the iterator cancels."""
        return self._stream(_CHAT, body, prompt_param="messages")

    def complete_stream(self, body: Mapping[str, Any]) -> AsyncGenerator[Chunk, None]:
        """Text completion chunks as llama.cpp produces them; closing the iterator cancels."""
        return self._stream(_COMPLETIONS, body, prompt_param="prompt")

    async def count_prompt_tokens(self, messages: list[Chunk]) -> int:
        """The prompt tokens a chat generation on `messages` has, counted as llama.cpp counts them.

        xllamacpp has no tokenizer call, but the llama.cpp server inside it has: the model's chat
        template renders the messages (with the generation prompt) and the text is tokenized
        with the special tokens parsed and added, exactly as a chat completion's prompt is.
        """
        await self._ready_server()
        rendered = await self._tokenizer_call("/apply-template", {"messages": messages})
        tokenized = await self._tokenizer_call(
            "/tokenize",
            {"content": rendered["prompt"], "add_special": True, "parse_special": True},
        )
        return len(tokenized["tokens"])

    def close(self) -> None:
        """Free the model once running requests finish; later requests get a 503."""
        with self._load_lock:
            self._is_closed = True
            self._server = None  # running requests keep their own reference until they end
            if self._private_http is not None:
                self._private_http.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        if self._socket_dir_cleanup is not None:
            self._socket_dir_cleanup()  # runs at most once, also at exit if close() never came

    # -- requests ---------------------------------------------------------------------------

    async def _complete_once(
        self, method: str, body: Mapping[str, Any], *, prompt_param: str
    ) -> Chunk:
        # A cancelled caller cannot stop a non-streamed generation: llama.cpp only offers
        # cancellation through the streaming callback. It runs to max_tokens and is discarded.
        server = await self._ready_server()
        request = self._engine_request(body, is_stream=False, prompt_param=prompt_param)
        response = await self._in_worker(self._generate, getattr(server, method), request, None)
        return self._finished(response, request, prompt_param=prompt_param)

    async def _stream(
        self, method: str, body: Mapping[str, Any], *, prompt_param: str
    ) -> AsyncGenerator[Chunk, None]:
        server = await self._ready_server()
        # Raised before the first chunk, so the caller answers with this 400, unbilled.
        request = self._engine_request(body, is_stream=True, prompt_param=prompt_param)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        consumer_gone = threading.Event()
        on_chunk = _chunk_forwarder(loop, queue, consumer_gone)
        job = self._in_worker(self._generate, getattr(server, method), request, on_chunk)
        # Runs after every chunk the thread queued: both travel through call_soon_threadsafe.
        job.add_done_callback(lambda _: queue.put_nowait(_DONE))
        try:
            while (chunk := await queue.get()) is not _DONE:
                # Stream chunks keep `timings`: its predicted_n is the exact count of tokens
                # generated so far, which bills a client that disconnects mid-stream.
                yield self._finished(chunk, request, prompt_param=prompt_param, is_chunk=True)
            job.result()  # re-raises what the engine raised (bad messages, …)
        finally:
            # The client went away, or we are done: the next callback returns True, which makes
            # llama.cpp stop generating and release the slot. A job not yet started never runs.
            consumer_gone.set()
            job.cancel()

    def _generate(
        self,
        handler: Callable[..., Any],
        request: Chunk,
        on_chunk: Callable[[Chunk], bool] | None,
    ) -> Chunk:
        # Counted until llama.cpp returns, i.e. until its slot is free again.
        with self._running_lock:
            self._running += 1
        try:
            return _call_engine(handler, request, on_chunk)
        finally:
            with self._running_lock:
                self._running -= 1

    def _engine_request(
        self, body: Mapping[str, Any], *, is_stream: bool, prompt_param: str
    ) -> Chunk:
        """The body as llama.cpp may take it: token ids in the vocabulary, integers in range.

        llama.cpp refuses an out-of-vocabulary prompt id without naming the field, silently
        drops such a logit_bias key, wraps ids and counts beyond 32 bits, and raises TypeError
        (a 500) for integers beyond 64 bits. So ids are checked here, and counts larger than a
        slot's context (which could never be generated anyway) are lowered to it.
        """
        request = {**body, "stream": is_stream}
        if prompt_param == "prompt":
            _check_token_ids(_prompt_token_ids(request.get("prompt")), self._n_vocab, "prompt")
        _check_token_ids(_logit_bias_ids(request.get("logit_bias")), self._n_vocab, "logit_bias")
        for name in _CONTEXT_BOUNDED:
            value = request.get(name)
            if type(value) is int and value > self.n_ctx_per_slot:
                request[name] = self.n_ctx_per_slot
        if type(request.get("seed")) is int:
            request["seed"] %= _SEED_MODULUS
        if request.get("stop"):
            # Only llama.cpp's verbose report says which stop sequence ended the text.
            request["verbose"] = True
        return request

    def _finished(
        self,
        response: Chunk,
        request: Mapping[str, Any],
        *,
        prompt_param: str,
        is_chunk: bool = False,
    ) -> Chunk:
        error = response.get("error")
        if isinstance(error, Mapping):
            raise _error_from_payload(error, request, prompt_param=prompt_param)
        if not is_chunk:
            response.pop("timings", None)
        _report_stop_sequence(response)
        # llama.cpp reports the GGUF's path as the model; never show clients our filesystem.
        response["model"] = self._model_name
        return response

    async def _tokenizer_call(self, path: str, body: Chunk) -> Chunk:
        # A thread of the default pool, not of ours: a count never waits behind generations.
        return await asyncio.to_thread(self._tokenizer_post, path, body)

    def _tokenizer_post(self, path: str, body: Chunk) -> Chunk:
        client = self._private_http
        if client is None or client.is_closed:
            raise _unavailable("the model was shut down")
        try:
            response = client.post(path, json=body)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.exception("llama.cpp's %s failed", path)
            raise _unavailable("its tokenizer did not answer") from exc
        error = answer.get("error") if isinstance(answer, Mapping) else None
        if isinstance(error, Mapping):
            raise _error_from_payload(error, body, prompt_param="messages")
        if response.status_code != 200 or not isinstance(answer, dict):
            raise EngineError(f"llama.cpp's {path} answered {response.status_code}", status=500)
        return answer

    # -- loading ----------------------------------------------------------------------------

    async def _ready_server(self) -> Any:
        server = self._server
        if server is not None:
            return server
        return await self._in_worker(self._load_once)

    def _in_worker(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        try:
            return asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        except RuntimeError as exc:  # close() shut the pool down
            raise _unavailable("the model was shut down") from exc

    def _load_once(self) -> Any:
        with self._load_lock:
            if self._server is not None:
                return self._server
            if self._is_closed:
                raise _unavailable("the model was shut down")
            self._raise_recent_failure()
            try:
                self._server = self._start_server()
            except EngineError as failure:
                self._last_failure = (time.monotonic(), failure)
                raise
            return self._server

    def _raise_recent_failure(self) -> None:
        # Without this, every request during an outage would re-hash a gigabyte of weights.
        if self._last_failure is None:
            return
        failed_at, failure = self._last_failure
        if time.monotonic() - failed_at < self._load_retry_after_s:
            # A fresh exception each time: re-raising one instance would grow its traceback.
            raise EngineError(failure.message, status=failure.status, code=failure.code)

    def _start_server(self) -> Any:
        started = time.monotonic()
        path = self._weights_path()
        import xllamacpp  # deferred: importing the engine is not free and tests may not need it

        params = self._params(xllamacpp.CommonParams(), path)
        self._n_vocab = _vocab_size(path)
        try:
            server = xllamacpp.Server(params)
        except RuntimeError as exc:
            logger.exception("llama.cpp failed to load %s", path)
            self._remove_socket_dir()
            raise _unavailable(f"llama.cpp could not load {path.name}") from exc
        logger.info("Loaded %s in %.1f s", path.name, time.monotonic() - started)
        self._private_http = _private_client(params.hostnames[0], params.api_keys[0])
        return server

    def _weights_path(self) -> Path:
        if not isinstance(self._weights, WeightSource):
            return Path(self._weights)
        try:
            return resolve_weights(self._weights)
        except WeightsError as exc:
            logger.error("Local model weights unusable: %s", exc)
            raise _unavailable(str(exc)) from exc

    def _params(self, params: Any, path: Path) -> Any:
        params.model.path = str(path)
        params.n_ctx = self._n_ctx
        params.n_parallel = self._n_parallel
        if self._n_threads:
            params.cpuparams.n_threads = self._n_threads
            params.cpuparams_batch.n_threads = self._n_threads
        params.verbosity = 0
        params.endpoint_slots = False
        # Server() always starts llama.cpp's own HTTP listener. Confine it to a unix socket in a
        # private (0700) folder and require a key nobody knows, so nothing can reach it but us.
        params.hostnames = [self._private_socket_path()]
        params.api_keys = [secrets.token_urlsafe(32)]
        return params

    def _private_socket_path(self) -> str:
        folder = tempfile.mkdtemp(prefix="plugsky-llama-")
        self._socket_dir_cleanup = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        return os.path.join(folder, "llama.sock")


def _private_client(socket_path: str, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url="http://llama.cpp",
        transport=httpx.HTTPTransport(uds=socket_path),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=_TOKENIZER_TIMEOUT_S,
        trust_env=False,
    )


def _vocab_size(path: Path) -> int | None:
    try:
        return gguf_vocab_size(path)
    except (GGUFError, OSError) as exc:
        # llama.cpp still refuses bad prompt ids itself; only the 400's `param` is lost.
        logger.warning("Vocabulary size of %s unknown, token ids unchecked: %s", path.name, exc)
        return None


def _prompt_token_ids(prompt: Any) -> list[Any]:
    """The token ids in a completion prompt: one token array, several, or strings and arrays."""
    if not isinstance(prompt, list):
        return []
    ids: list[Any] = []
    for item in prompt:
        if isinstance(item, list):
            ids.extend(item)
        elif not isinstance(item, str | dict):  # llama.cpp's multimodal prompt objects
            ids.append(item)
    return ids


def _logit_bias_ids(bias: Any) -> list[Any]:
    """Token ids of a logit_bias: [[id, bias], ...] pairs or OpenAI's {"id": bias} map.

    Either may name a token by its text instead (`[" Hello", 5]`, `{" Hello": 5}`), which
    llama.cpp tokenizes itself: those are not ids and are left out.
    """
    if isinstance(bias, Mapping):
        keys = [int(key) if key.isascii() and key.isdigit() else key for key in bias]
    elif isinstance(bias, list):
        keys = [pair[0] for pair in bias if isinstance(pair, list | tuple) and pair]
    else:
        keys = []
    return [key for key in keys if not isinstance(key, str)]


def _check_token_ids(ids: list[Any], n_vocab: int | None, param: str) -> None:
    check_token_ids(ids, vocabulary_size=n_vocab or _MAX_TOKEN_ID + 1, param=param)


def _call_engine(
    handler: Callable[..., Any], request: Chunk, on_chunk: Callable[[Chunk], bool] | None
) -> Chunk:
    """Run one xllamacpp call (in a worker thread), with its exceptions as EngineError."""
    try:
        return handler(request) if on_chunk is None else (handler(request, on_chunk) or {})
    except ValueError as exc:  # malformed request, e.g. a message without content
        raise EngineError(str(exc), status=400, param=_param_for(str(exc), request)) from exc
    except RuntimeError as exc:
        # Raised for content the model cannot take (images without a projector) and for
        # genuine engine failures; only the former is the client's to fix.
        status = 400 if "not supported" in str(exc) else 500
        raise EngineError(str(exc), status=status) from exc


def _report_stop_sequence(response: Chunk) -> None:
    """The stop sequence that ended the text as vLLM reports it, `choices[].stop_reason`, from
    llama.cpp's verbose report (which also holds the prompt and the GGUF's path: dropped)."""
    verbose = response.pop("__verbose", None)
    if not isinstance(verbose, Mapping) or verbose.get("stop_type") != "word":
        return
    word = verbose.get("stopping_word")
    for choice in response.get("choices") or []:
        if isinstance(choice, dict) and choice.get("finish_reason") == "stop" and word:
            choice["stop_reason"] = word


def _chunk_forwarder(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], consumer_gone: threading.Event
) -> Callable[[Chunk], bool]:
    """The streaming callback: hand each chunk to the loop; True asks llama.cpp to stop."""

    def on_chunk(chunk: Chunk) -> bool:
        if consumer_gone.is_set():
            return True
        try:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            return True
        return False

    return on_chunk


def _error_from_payload(
    error: Mapping[str, Any], request: Mapping[str, Any], *, prompt_param: str
) -> EngineError:
    """EngineError for an ``{"error": …}`` that llama.cpp returned instead of raising."""
    if error.get("type") == "exceed_context_size_error":
        return _context_exceeded(error, prompt_param)
    message = str(error.get("message") or "The model could not process the request.")
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    if status == 501:  # llama.cpp's "not supported": a feature the request asked for
        status = 400
    return EngineError(message, status=status, param=_param_for(message, request))


def _context_exceeded(error: Mapping[str, Any], prompt_param: str) -> EngineError:
    n_ctx, n_prompt = error.get("n_ctx"), error.get("n_prompt_tokens")
    if isinstance(n_ctx, int) and isinstance(n_prompt, int):
        message = (
            f"This model's maximum context length is {n_ctx} tokens. However, your "
            f"{prompt_param} resulted in {n_prompt} tokens. Please reduce the length of the "
            f"{prompt_param}."
        )
    else:
        message = str(error.get("message") or "The input is longer than the model's context.")
    return EngineError(message, status=400, code="context_length_exceeded", param=prompt_param)


def _param_for(message: str, request: Mapping[str, Any]) -> str | None:
    """The request field an engine message blames, when it names one the request has."""
    names = _QUOTED_NAME.findall(message)
    leading = _LEADING_NAME.match(message)
    if leading:
        names.append(leading.group(1))
    if "messages" in request and (_MESSAGE_WORDS.search(message) or _MESSAGE_FIELDS & {*names}):
        names.append("messages")  # a complaint about one message's fields is about `messages`
    return next((name for name in names if name in request), None)


def _unavailable(reason: str) -> EngineError:
    return EngineError(f"The model is unavailable: {reason}", status=503, code="model_unavailable")


def _display_name(weights: WeightSource | str | os.PathLike[str]) -> str:
    if isinstance(weights, WeightSource):
        return weights.filename
    return Path(weights).name
