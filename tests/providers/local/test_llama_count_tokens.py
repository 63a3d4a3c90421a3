"""LlamaRuntime.count_prompt_tokens: the prompt count a real generation reports, exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.providers.local import BUILTIN_WEIGHTS, EngineError, LlamaRuntime

pytestmark = pytest.mark.xdist_group("local-engine")

CONVERSATION = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    # Multi-byte text and a special token's spelling: tokenized as the generation would.
    {"role": "user", "content": "And of Japan? Héllo 🌊 <|im_end|> done."},
]


@pytest.fixture(scope="module", params=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
def runtime(request: pytest.FixtureRequest) -> Iterator[LlamaRuntime]:
    engine = LlamaRuntime(BUILTIN_WEIGHTS[request.param], n_ctx=2048, n_parallel=1)
    yield engine
    engine.close()


async def _generated_prompt_tokens(runtime: LlamaRuntime, messages: list[dict[str, Any]]) -> int:
    # No prompt cache: the reported prompt_tokens is then the whole prompt, all evaluated.
    body = {"messages": messages, "max_tokens": 1, "temperature": 0, "cache_prompt": False}
    response = await runtime.chat(body)
    details = response["usage"].get("prompt_tokens_details") or {}
    assert details.get("cached_tokens", 0) == 0
    return int(response["usage"]["prompt_tokens"])


@pytest.mark.asyncio
@pytest.mark.parametrize("turns", [1, 2, 4])
async def test_the_count_equals_a_real_generations_prompt_tokens(
    runtime: LlamaRuntime, turns: int
) -> None:
    messages = CONVERSATION[-turns:] if turns < 4 else CONVERSATION
    counted = await runtime.count_prompt_tokens(messages)
    assert counted == await _generated_prompt_tokens(runtime, messages)


@pytest.mark.asyncio
async def test_a_closed_runtime_refuses_to_count() -> None:
    engine = LlamaRuntime(BUILTIN_WEIGHTS["smollm2-135m-instruct"], n_ctx=512)
    assert await engine.count_prompt_tokens(CONVERSATION[1:2]) > 0
    engine.close()
    with pytest.raises(EngineError) as raised:
        await engine.count_prompt_tokens(CONVERSATION[1:2])
    assert (raised.value.status, raised.value.code) == (503, "model_unavailable")


@pytest.mark.asyncio
async def test_a_message_the_template_cannot_take_is_a_400(runtime: LlamaRuntime) -> None:
    with pytest.raises(EngineError) as raised:
        await runtime.count_prompt_tokens([{"role": "user"}])
    assert raised.value.status == 400
    assert raised.value.param == "messages"
