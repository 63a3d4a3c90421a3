"""Token log probabilities in OpenAI's two shapes.

llama.cpp reports them per token in the chat shape (`{"content": [{"token", "logprob", "bytes",
"top_logprobs"}]}`, plus its own `id`), on /completions too. Chat clients get that shape without
the extra field; /completions clients get the legacy one: parallel lists of tokens, their
logprobs, their top alternatives as {token: logprob} maps, and each token's offset in the text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TOKEN_FIELDS = ("token", "logprob", "bytes")


def chat_logprobs(raw: dict[str, Any] | None, *, top: int) -> dict[str, Any] | None:
    """The engine's per-chunk logprobs in the chat shape with `top` alternatives per token, or
    None when it sent none."""
    if not raw or not raw.get("content"):
        return None
    return {"content": [_chat_token(token, top) for token in raw["content"]], "refusal": None}


def _chat_token(token: dict[str, Any], top: int) -> dict[str, Any]:
    entry = {name: token.get(name) for name in _TOKEN_FIELDS}
    entry["top_logprobs"] = [
        {name: alternative.get(name) for name in _TOKEN_FIELDS}
        for alternative in (token.get("top_logprobs") or [])[:top]
    ]
    return entry


@dataclass
class LegacyLogprobs:
    """The legacy `logprobs` object of one /completions choice, built as tokens arrive.

    `offset` is where the generated text starts in the choice's `text` (the echoed prompt's
    length, or 0).
    """

    offset: int = 0
    top: int = 0  # alternatives per token the request asked for
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def add(self, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        """Record the tokens of one engine chunk; returns their legacy shape (for streams)."""
        if not raw or not raw.get("content"):
            return None
        part = LegacyLogprobs(offset=self.offset, top=self.top)
        for token in raw["content"]:
            for target in (self, part):
                target._append(token)
        self.offset = part.offset
        return part.as_dict()

    def _append(self, token: dict[str, Any]) -> None:
        text = str(token.get("token", ""))
        self.tokens.append(text)
        self.token_logprobs.append(float(token.get("logprob", 0.0)))
        self.top_logprobs.append(
            {str(alt.get("token", "")): float(alt.get("logprob", 0.0))
             for alt in (token.get("top_logprobs") or [])[: self.top]}
        )  # fmt: skip
        self.text_offset.append(self.offset)
        self.offset += len(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }
