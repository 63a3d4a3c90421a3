"""Chat completions on the local engine: OpenAI request in, OpenAI chunks out.

Everything llama.cpp-specific happens here: images read into text, tools and JSON formats turned
into a prompt and a grammar, one engine job per choice (`n`), llama.cpp's samplers set to what
OpenAI's parameters mean, and its chunks (with `timings`, its own logprobs fields) turned into
OpenAI's, with exact token counts as they flow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from apps.protocol.openai import ChatCompletionRequest
from apps.providers.base import Chunk, Usage
from apps.providers.local_engine.images import ImageReader, has_images, message_texts
from apps.providers.local_engine.logprobs import chat_logprobs
from apps.providers.local_engine.sampling import sampling_fields
from apps.providers.local_engine.structured import JsonAnswer, json_answer, lark
from apps.providers.local_engine.tally import Tally, merge_streams
from apps.providers.local_engine.tools import ToolPlan, render_conversation, tool_stream

# Chat templates add a few tokens per message; UTF-8 bytes bound the text's tokens from above.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
# Some templates add a default system prompt (Qwen's is ~20 tokens) when the request has none.
_TEMPLATE_TOKENS_PER_REQUEST = 64

StartStream = Callable[[dict[str, Any]], AsyncIterator[Chunk]]


def prompt_token_bound(
    request: ChatCompletionRequest, plan: ToolPlan | None, *, context_length: int
) -> int:
    """Tokens of the rendered conversation, bounded without tokenizing; with images, the whole
    context window (what an image reads as is only known once it has been read)."""
    if has_images(request.messages):
        return context_length
    texts = [_plain_text(message.content) for message in request.messages]
    return _rendered_bound(render_conversation(request.messages, texts, plan))


async def chat_chunks(
    request: ChatCompletionRequest,
    plan: ToolPlan | None,
    *,
    start: StartStream,
    reader: ImageReader,
    max_tokens: int,
    usage: Usage,
) -> AsyncIterator[Chunk]:
    """OpenAI chunks of the request's `n` choices; `plan` is its `tool_plan`, `start` runs one
    engine body."""
    answer = json_answer(request.response_format)
    messages = await engine_messages(request, plan, reader=reader)
    grammar = _grammar(plan, answer)
    calling = plan if plan is not None and plan.mode != "none" else None
    streams = []
    for choice in range(request.n):
        body = _engine_body(request, messages, choice, grammar=grammar, max_tokens=max_tokens)
        streams.append(tool_stream(start, body, calling, answer) if calling else start(body))
    tally = Tally(usage, samples_per_prompt=request.n)
    top = request.top_logprobs or 0
    async for index, chunk in merge_streams(streams):
        tally.observe(index, chunk)
        for choice in chunk.get("choices") or []:
            yield {"choices": [_openai_choice(index, choice, logprobs=request.logprobs, top=top)]}


async def engine_messages(
    request: ChatCompletionRequest, plan: ToolPlan | None, *, reader: ImageReader
) -> list[dict[str, Any]]:
    """The conversation as the engine takes it: images read, calls and tools in the text."""
    texts = await message_texts(request.messages, reader=reader)
    return render_conversation(request.messages, texts, plan)


def _openai_choice(
    index: int, choice: dict[str, Any], *, logprobs: bool | None, top: int
) -> dict[str, Any]:
    converted = {
        "index": index,
        "delta": {key: value for key, value in (choice.get("delta") or {}).items() if value},
        "logprobs": chat_logprobs(choice.get("logprobs"), top=top) if logprobs else None,
        "finish_reason": choice.get("finish_reason"),
    }
    if choice.get("stop_reason"):  # the stop sequence that ended the text (see local.llama)
        converted["stop_reason"] = choice["stop_reason"]
    return converted


def _plain_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(part.text or "" for part in content if part.type == "text")


def _rendered_bound(messages: list[dict[str, Any]]) -> int:
    """An upper bound on prompt tokens without tokenizing: every token covers >= 1 UTF-8 byte."""
    size = sum(_TEMPLATE_TOKENS_PER_MESSAGE + len(m["content"].encode()) for m in messages)
    return _TEMPLATE_TOKENS_PER_REQUEST + size


def _grammar(plan: ToolPlan | None, answer: JsonAnswer | None) -> str | None:
    if plan is not None:
        return plan.grammar(answer)
    if answer is not None:
        return lark("start: answer", answer.rule("answer"))
    return None


def _engine_body(
    request: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    choice: int,
    *,
    grammar: str | None,
    max_tokens: int,
) -> dict[str, Any]:
    body = {"messages": messages, **sampling_fields(request, sample=choice, max_tokens=max_tokens)}
    if grammar is not None:
        body["grammar"] = grammar
    if request.logprobs:
        body["logprobs"] = True
        # llama.cpp reports nothing at all when asked for 0 alternatives; extras are cut later.
        body["top_logprobs"] = max(request.top_logprobs or 0, 1)
    return body
