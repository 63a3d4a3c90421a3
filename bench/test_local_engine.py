"""Plugsky's full HTTP stack vs the same model called directly on llama.cpp's own server.

All sides stream the same chat request for the same GGUF file with the same slot count; the
table compares time to first token and decode speed at 1 and 4 concurrent streams:

- llama.cpp direct: llama.cpp's own HTTP server (xllamacpp.Server), the floor;
- engine direct: the Plugsky engine process's /chat (EngineClient), i.e. the engine hop alone;
- Plugsky /v1: Daphne, the gateway and the engine, as a customer sees it.

Run with `make bench`; results go to bench/results/local_engine.json and the table is printed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import pytest

from apps.catalog.builtin import BUILTIN_MODELS
from apps.providers.engine_client import EngineClient

pytestmark = pytest.mark.bench

MODEL_ID = "plugsky-nano"
WEIGHTS = "smollm2-135m-instruct"
SLOTS = 4
CONTEXT_PER_SLOT = 4096
MAX_TOKENS = 128
ROUNDS = 5
CONCURRENCY = (1, 4)
RESULTS = Path(__file__).parent / "results"
ENTRY = next(entry for entry in BUILTIN_MODELS if entry.id == MODEL_ID)
MESSAGES = [
    {"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}
]


@dataclass
class StreamRun:
    ttft_s: float
    tokens: int
    decode_s: float


@dataclass
class Row:
    target: str
    concurrency: int
    ttft_ms_median: float
    decode_tok_s_per_stream: float
    aggregate_tok_s: float
    tokens: int


async def _stream_once(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> StreamRun:
    body = {
        "model": MODEL_ID,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            choices = chunk.get("choices") or []
            if first is None and choices and (choices[0].get("delta") or {}).get("content"):
                first = time.perf_counter()
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    ended = time.perf_counter()
    assert first is not None and tokens > 1
    return StreamRun(ttft_s=first - started, tokens=tokens, decode_s=ended - first)


async def _engine_stream_once(client: EngineClient) -> StreamRun:
    """The engine's own /chat, with the engine body the gateway would send for this request."""
    body = {
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream_options": {"include_usage": True},
        "timings_per_token": True,
    }
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async for chunk in client.chat_stream(ENTRY, body):
        choices = chunk.get("choices") or []
        if first is None and choices and (choices[0].get("delta") or {}).get("content"):
            first = time.perf_counter()
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    ended = time.perf_counter()
    assert first is not None and tokens > 1
    return StreamRun(ttft_s=first - started, tokens=tokens, decode_s=ended - first)


StreamOnce = Callable[[], Awaitable[StreamRun]]


async def _measure(targets: dict[str, StreamOnce], concurrency: int) -> list[Row]:
    """Rounds of `concurrency` streams, the targets taking turns round by round: on a shared
    machine, load that comes and goes then falls on every target alike."""
    runs: dict[str, list[StreamRun]] = {name: [] for name in targets}
    aggregate: dict[str, list[float]] = {name: [] for name in targets}
    for stream_once in targets.values():
        await stream_once()  # warm-up: model loaded, caches primed
    for _ in range(ROUNDS):
        for name, stream_once in targets.items():
            started = time.perf_counter()
            batch = await asyncio.gather(*(stream_once() for _ in range(concurrency)))
            wall = time.perf_counter() - started
            runs[name].extend(batch)
            aggregate[name].append(sum(run.tokens for run in batch) / wall)
    return [_row(name, concurrency, runs[name], aggregate[name]) for name in targets]


def _row(target: str, concurrency: int, runs: list[StreamRun], aggregate: list[float]) -> Row:
    return Row(
        target=target,
        concurrency=concurrency,
        ttft_ms_median=round(statistics.median(r.ttft_s for r in runs) * 1000, 1),
        decode_tok_s_per_stream=round(
            statistics.median((r.tokens - 1) / r.decode_s for r in runs), 1
        ),
        aggregate_tok_s=round(statistics.median(aggregate), 1),
        tokens=sum(r.tokens for r in runs),
    )


async def _all_rows(
    llama: tuple[str, dict[str, str]], engine_url: str, plugsky: tuple[str, dict[str, str]]
) -> list[Row]:
    # A fresh connection per stream: llama.cpp closes idle keep-alive sockets.
    limits = httpx.Limits(max_keepalive_connections=0)
    engine = EngineClient(engine_url)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        targets: dict[str, StreamOnce] = {
            "llama.cpp direct": lambda: _stream_once(client, *llama),
            "engine direct": lambda: _engine_stream_once(engine),
            "Plugsky /v1": lambda: _stream_once(client, *plugsky),
        }
        rows = []
        for concurrency in CONCURRENCY:
            rows.extend(await _measure(targets, concurrency))
        return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _llama_cpp_server() -> tuple[object, str, dict[str, str]]:
    """The same GGUF on llama.cpp's own HTTP server (xllamacpp), as a baseline."""
    import xllamacpp

    from apps.providers.local import BUILTIN_WEIGHTS, resolve_weights

    params = xllamacpp.CommonParams()
    params.model.path = str(resolve_weights(BUILTIN_WEIGHTS[WEIGHTS]))
    params.n_parallel = SLOTS
    params.n_ctx = CONTEXT_PER_SLOT * SLOTS
    params.verbosity = 0
    port = _free_port()
    params.hostnames = ["127.0.0.1"]
    params.port = port
    key = secrets.token_urlsafe(16)
    params.api_keys = [key]
    server = xllamacpp.Server(params)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    return server, url, {"Authorization": f"Bearer {key}"}


def _table(rows: list[Row]) -> str:
    lines = [
        "| target | streams | TTFT median (ms) | decode tok/s per stream | aggregate tok/s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.target} | {row.concurrency} | {row.ttft_ms_median} | "
            f"{row.decode_tok_s_per_stream} | {row.aggregate_tok_s} |"
        )
    return "\n".join(lines)


def test_local_engine_vs_llama_cpp(live_server_url, live_key, engine_url):
    _, raw_key = live_key
    plugsky = (f"{live_server_url}/v1/chat/completions", {"Authorization": f"Bearer {raw_key}"})
    server, llama_url, llama_headers = _llama_cpp_server()
    rows = asyncio.run(_all_rows((llama_url, llama_headers), engine_url, plugsky))
    del server
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "local_engine.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    print("\n" + _table(rows))
