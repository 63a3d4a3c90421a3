"""LlamaRuntime on SmolLM2-135M: OpenAI-shaped results, streaming, errors, slots, the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.providers.local import BUILTIN_WEIGHTS, EngineError, LlamaRuntime, WeightSource

SMOLLM2 = BUILTIN_WEIGHTS["smollm2-135m-instruct"]

# Timing tests must not share the CPU with each other. No skip when the weights are missing:
# the runtime's tests then fail, as a model that `make run` cannot serve should.
pytestmark = pytest.mark.xdist_group("local-engine")

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture(scope="module")
def runtime() -> Iterator[LlamaRuntime]:
    engine = LlamaRuntime(SMOLLM2, n_ctx=2048, n_parallel=2, model_name="smollm2")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def single_slot() -> Iterator[LlamaRuntime]:
    engine = LlamaRuntime(SMOLLM2, n_ctx=4096, n_parallel=1)
    yield engine
    engine.close()


def _delta_text(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or choices[0].get("text") or ""


async def _collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in chunks]


@pytest.mark.asyncio
async def test_chat_returns_an_openai_response(runtime: LlamaRuntime) -> None:
    response = await runtime.chat({"messages": HELLO, "max_tokens": 8, "temperature": 0})

    assert response["object"] == "chat.completion"
    assert response["model"] == "smollm2"  # never the GGUF's path on disk
    assert "timings" not in response
    assert response["choices"][0]["message"]["role"] == "assistant"
    assert response["choices"][0]["message"]["content"]
    assert response["usage"]["completion_tokens"] == 8


@pytest.mark.asyncio
async def test_streamed_chat_text_equals_the_non_streamed_text(runtime: LlamaRuntime) -> None:
    body = {"messages": HELLO, "max_tokens": 24, "temperature": 0, "seed": 7}

    whole = await runtime.chat(body)
    chunks = await _collect(runtime.chat_stream(body))

    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert "".join(_delta_text(c) for c in chunks) == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.asyncio
async def test_completions_plain_and_streamed(runtime: LlamaRuntime) -> None:
    body = {"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}

    whole = await runtime.complete(body)
    chunks = await _collect(runtime.complete_stream(body))

    assert whole["object"] == "text_completion"
    assert whole["usage"]["completion_tokens"] == 6
    assert "".join(_delta_text(chunk) for chunk in chunks) == whole["choices"][0]["text"]


@pytest.mark.asyncio
async def test_context_exceeded_is_a_400_naming_the_input(runtime: LlamaRuntime) -> None:
    too_long = "hello " * (runtime.n_ctx_per_slot + 100)

    with pytest.raises(EngineError) as chat_failure:
        await runtime.chat({"messages": [{"role": "user", "content": too_long}]})
    with pytest.raises(EngineError) as stream_failure:
        await _collect(runtime.complete_stream({"prompt": too_long}))

    for failure, param in ((chat_failure, "messages"), (stream_failure, "prompt")):
        assert failure.value.status == 400
        assert failure.value.code == "context_length_exceeded"
        assert failure.value.param == param
        # The size llama.cpp reports is the per-slot share the property predicts.
        assert f"maximum context length is {runtime.n_ctx_per_slot} tokens" in str(failure.value)


COUNT = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]


@pytest.mark.asyncio
async def test_the_stop_sequence_that_ended_the_text_is_the_choices_stop_reason(
    runtime: LlamaRuntime,
) -> None:
    body = {"messages": COUNT, "max_tokens": 40, "temperature": 0, "stop": ["zz", "3"]}
    chunks = await _collect(runtime.chat_stream(body))
    response = await runtime.chat(body)

    choices = [choice for chunk in chunks for choice in chunk.get("choices") or []]
    finishing = [choice for choice in choices if choice.get("finish_reason")]
    assert [(c["finish_reason"], c.get("stop_reason")) for c in finishing] == [("stop", "3")]
    assert response["choices"][0]["stop_reason"] == "3"
    # llama.cpp's verbose report, which says it, holds the GGUF's path: it never leaves.
    assert all("__verbose" not in chunk for chunk in [*chunks, response])
    assert ".gguf" not in repr([*chunks, response])


@pytest.mark.asyncio
async def test_an_end_that_no_stop_sequence_made_has_no_stop_reason(
    runtime: LlamaRuntime,
) -> None:
    chunks = await _collect(runtime.chat_stream({"messages": COUNT, "max_tokens": 3}))
    assert all("stop_reason" not in choice for c in chunks for choice in c.get("choices") or [])


def test_slot_context_follows_llama_cpp_rounding() -> None:
    assert LlamaRuntime(SMOLLM2, n_ctx=2048, n_parallel=2).n_ctx_per_slot == 1024
    assert LlamaRuntime(SMOLLM2, n_ctx=1000, n_parallel=3).n_ctx_per_slot == 512
    assert LlamaRuntime(SMOLLM2, n_ctx=4096, n_parallel=3).n_ctx_per_slot == 1536


@pytest.mark.asyncio
async def test_malformed_requests_are_400s(runtime: LlamaRuntime) -> None:
    with pytest.raises(EngineError) as raised:  # xllamacpp raises ValueError for this
        await runtime.chat({"messages": [{"role": "user"}]})
    with pytest.raises(EngineError) as in_stream:
        await _collect(runtime.chat_stream({"messages": [{"role": "user", "content": 5}]}))
    with pytest.raises(EngineError) as returned:  # … and returns an error dict for this
        await runtime.chat({"messages": HELLO, "n": 5})

    assert (raised.value.status, raised.value.param) == (400, "messages")
    assert (in_stream.value.status, in_stream.value.param) == (400, "messages")
    assert (returned.value.status, returned.value.param) == (400, "n")
    assert returned.value.type == "invalid_request_error"


@pytest.mark.asyncio
async def test_weights_that_fail_their_pin_are_never_loaded(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(64))
    engine = LlamaRuntime(WeightSource(path=str(fake), sha256="0" * 64, filename="model.gguf"))

    with pytest.raises(EngineError) as failure:
        await engine.chat({"messages": HELLO})

    assert (failure.value.status, failure.value.code) == (503, "model_unavailable")
    assert not engine.is_loaded
    engine.close()


@pytest.mark.asyncio
async def test_a_file_llama_cpp_cannot_load_is_503(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(64))
    engine = LlamaRuntime(fake)

    with pytest.raises(EngineError) as failure:
        await engine.complete({"prompt": "hi"})

    assert (failure.value.status, failure.value.code) == (503, "model_unavailable")
    engine.close()


@pytest.mark.asyncio
async def test_parallel_slots_serve_streams_concurrently(runtime: LlamaRuntime) -> None:
    await runtime.load()
    body = {"prompt": "Once upon a time", "max_tokens": 96, "ignore_eos": True}

    async def timed() -> tuple[float, float]:
        stamps = [time.perf_counter() async for _ in runtime.complete_stream(body)]
        return stamps[1], stamps[-1]  # first token, last chunk

    (first_a, last_a), (first_b, last_b) = await asyncio.gather(timed(), timed())

    # Serialized requests would not start until the other finished; slots interleave them.
    assert first_b < last_a and first_a < last_b


@pytest.mark.asyncio
async def test_closing_a_stream_frees_its_slot(single_slot: LlamaRuntime) -> None:
    await single_slot.load()
    endless = {"prompt": "Count forever:", "max_tokens": 3000, "ignore_eos": True}
    stream = single_slot.complete_stream(endless)
    for _ in range(3):
        await anext(stream)

    await stream.aclose()  # what an ASGI server does when the client disconnects
    started = time.perf_counter()
    await single_slot.complete({"prompt": "Hi", "max_tokens": 4})

    # The one slot would be busy for ~3000 tokens (>15 s) had the generation carried on.
    assert time.perf_counter() - started < 5.0


@pytest.mark.asyncio
async def test_cancelling_the_consumer_task_frees_the_slot(single_slot: LlamaRuntime) -> None:
    await single_slot.load()
    endless = {"messages": HELLO, "max_tokens": 3000, "ignore_eos": True}
    received = asyncio.Event()

    async def consume() -> None:
        async for _ in single_slot.chat_stream(endless):
            received.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(received.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.perf_counter()
    await single_slot.chat({"messages": HELLO, "max_tokens": 4})

    assert time.perf_counter() - started < 5.0


@pytest.mark.asyncio
async def test_event_loop_keeps_ticking_during_generation(runtime: LlamaRuntime) -> None:
    await runtime.load()
    gaps: list[float] = []
    generating = True

    async def tick() -> None:
        last = time.perf_counter()
        while generating:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await runtime.complete({"prompt": "Once upon a time", "max_tokens": 128, "ignore_eos": True})
    duration = time.perf_counter() - started
    generating = False
    await ticker

    # A blocked loop would show one gap as long as the whole generation. Bounds are relative
    # to it because other processes may share these cores.
    assert max(gaps) < max(0.1, duration / 5)
    assert len(gaps) >= duration / 0.01 / 4  # at least a quarter of the ideal tick count


@pytest.mark.asyncio
async def test_a_closed_runtime_answers_503() -> None:
    engine = LlamaRuntime(SMOLLM2, n_ctx=512)
    await engine.complete({"prompt": "Hi", "max_tokens": 1})
    engine.close()

    with pytest.raises(EngineError) as failure:
        await engine.complete({"prompt": "Hi", "max_tokens": 1})

    assert failure.value.status == 503


@pytest.mark.asyncio
async def test_stream_chunks_count_generated_tokens(runtime: LlamaRuntime) -> None:
    """Metering relies on this: each chunk says how many tokens exist so far."""
    body = {"messages": HELLO, "max_tokens": 10, "temperature": 0, "timings_per_token": True}
    chunks = await _collect(runtime.chat_stream(body))
    counts = [c["timings"]["predicted_n"] for c in chunks if c.get("timings") and c["choices"]]
    assert counts == sorted(counts)
    assert counts[-1] == 10


# --- What llama.cpp must never see -----------------------------------------------------------

SMOLLM2_VOCAB = 49152


@pytest.fixture(scope="module")
def small_context() -> Iterator[LlamaRuntime]:
    engine = LlamaRuntime(SMOLLM2, n_ctx=256, n_parallel=1)
    yield engine
    engine.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": [1, SMOLLM2_VOCAB]}, "prompt"),
        ({"prompt": [[1], [-1]]}, "prompt"),
        ({"prompt": [2**32 + 1]}, "prompt"),  # llama.cpp would truncate it to token 1
        ({"prompt": "x", "logit_bias": [[SMOLLM2_VOCAB, 5.0]]}, "logit_bias"),  # silently dropped
        ({"prompt": "x", "logit_bias": [[2**64, 5.0]]}, "logit_bias"),  # a TypeError: a 500
        ({"prompt": "x", "logit_bias": {str(SMOLLM2_VOCAB): 5.0}}, "logit_bias"),
    ],
)
async def test_token_ids_outside_the_vocabulary_are_refused_before_generation(
    runtime: LlamaRuntime, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(EngineError) as streamed:
        await _collect(runtime.complete_stream({**body, "max_tokens": 2}))
    with pytest.raises(EngineError) as whole:
        await runtime.complete({**body, "max_tokens": 2})

    for failure in (streamed.value, whole.value):
        assert (failure.status, failure.code, failure.param) == (400, "invalid_value", param)
        assert failure.type == "invalid_request_error"
    assert runtime.n_vocab == SMOLLM2_VOCAB


@pytest.mark.asyncio
async def test_chat_logit_bias_is_checked_and_text_keys_are_left_to_llama_cpp(
    runtime: LlamaRuntime,
) -> None:
    with pytest.raises(EngineError) as failure:
        await runtime.chat({"messages": HELLO, "max_tokens": 2, "logit_bias": [[-1, 1.0]]})
    assert (failure.value.status, failure.value.param) == (400, "logit_bias")
    bias = [[SMOLLM2_VOCAB - 1, 1.0], [" sea", -5.0]]
    response = await runtime.chat({"messages": HELLO, "max_tokens": 2, "logit_bias": bias})
    assert response["usage"]["completion_tokens"] == 2


@pytest.mark.asyncio
async def test_integers_beyond_32_bits_do_not_reach_llama_cpp(small_context: LlamaRuntime) -> None:
    """2**32 - 1 tokens would wrap to -1 ("no limit"); seeds past 64 bits raise TypeError."""
    huge = 2**70
    body = {"prompt": "Count:", "max_tokens": huge, "repeat_last_n": huge, "seed": huge}
    response = await small_context.complete({**body, "presence_penalty": 0.1, "temperature": 0})
    assert response["choices"][0]["finish_reason"] == "length"
    assert response["usage"]["completion_tokens"] < small_context.n_ctx_per_slot


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [-1, 2**32 - 1, 2**63 + 7])
async def test_seeds_llama_cpp_reads_as_random_are_reproducible(
    single_slot: LlamaRuntime, seed: int
) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 1.5, "seed": seed}
    first = await single_slot.complete({**body, "cache_prompt": False})
    second = await single_slot.complete({**body, "cache_prompt": False})
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
