"""The benchmark's own parts, checked on their own: the lean client reads both body framings
and times each event, the paced mock keeps its pace, and a stream cut short is not counted as
served (the billing truth compares against that count)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import mock_upstream
from bench.gateway_cases import PACE_MS, check_chat, content_times
from bench.gateway_setup import MockUpstream, run_mock
from bench.http_client import Connection, request_bytes

pytestmark = pytest.mark.bench

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def paced() -> Iterator[MockUpstream]:
    running = run_mock("--pace-ms", str(PACE_MS))
    yield next(running)
    running.close()


def _request(mock: MockUpstream, key: str, **fields: object) -> bytes:
    body = {"model": "m", "messages": MESSAGES, **fields}
    return request_bytes(f"{mock.base_url}/v1/chat/completions", body=body,
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def test_one_connection_reads_a_json_answer_then_a_paced_stream(paced):
    stream = {"stream": True, "stream_options": {"include_usage": True}}

    async def calls():
        connection = await Connection.open(paced.base_url)
        try:
            chat = await connection.send(_request(paced, "harness", max_tokens=5))
            streamed = await connection.send(_request(paced, "harness", max_tokens=20, **stream))
            error = await connection.send(_request(paced, "harness", max_tokens=0))
        finally:
            connection.close()
        return chat, streamed, error

    chat, streamed, error = asyncio.run(calls())
    check_chat(chat)
    times = content_times(streamed)  # 20 chunks, usage, [DONE], or it raises
    gaps_ms = [(later - earlier) * 1000 for earlier, later in itertools.pairwise(times)]
    # Paced, never bunched (the mock's ticks are at least half a pace apart; the rest is this
    # process's own lateness in reading them).
    assert min(gaps_ms) > PACE_MS / 4, gaps_ms
    assert (times[-1] - times[0]) * 1000 >= 19 * PACE_MS * 0.9
    assert error.status == 400 and b"max_tokens" in error.body
    assert paced.served()["harness"] == {
        "calls": 2, "prompt_tokens": 2 * mock_upstream.PROMPT_TOKENS,
        "completion_tokens": 5 + 20,
    }  # fmt: skip


def test_a_stream_cut_short_is_not_counted_as_served(paced):
    stream = _request(paced, "cut-short", stream=True, max_tokens=20)

    async def leave_early():
        connection = await Connection.open(paced.base_url)
        sending = asyncio.ensure_future(connection.send(stream))
        await asyncio.sleep(PACE_MS * 4 / 1000)
        connection.close()
        await asyncio.sleep(PACE_MS * 25 / 1000)  # past the stream's end
        sending.cancel()

    asyncio.run(leave_early())
    assert "cut-short" not in paced.served()


def test_the_mock_says_its_port_only_once_it_accepts_connections():
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.mock_upstream"],
        cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])

        async def connect() -> None:
            connection = await Connection.open(f"http://127.0.0.1:{port}")  # refused if early
            connection.close()

        asyncio.run(connect())
    finally:
        process.terminate()
        process.wait(timeout=30)
