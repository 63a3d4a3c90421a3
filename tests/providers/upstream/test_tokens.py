from __future__ import annotations

import pytest

from apps.providers.upstream.tokens import FAMILIES, count_tokens, family_for

# Mixed scripts, emoji and code: where the tables differ most.
MIXED = "emoji 🎉🎉 mixed Ünïcödé"


def test_openai_counts_with_o200k() -> None:
    # o200k_base encodes "hello world" as [24912, 2375] and this text as 6 tokens.
    assert count_tokens("hello world", family="openai") == 2
    assert count_tokens("Smoke tests keep releases honest.", family="openai") == 6
    assert count_tokens("日本語のテキストです。", family="openai") == 8


def test_each_family_has_its_own_table() -> None:
    assert count_tokens(MIXED, family="openai") == 10
    assert count_tokens(MIXED, family="llama") == 14
    assert count_tokens(MIXED, family="qwen") == 12


def test_vendors_without_a_published_tokenizer_use_o200k() -> None:
    openai = count_tokens(MIXED, family="openai")
    assert count_tokens(MIXED, family="anthropic") == openai
    assert count_tokens(MIXED, family="gemini") == openai


def test_special_token_text_counts_as_plain_text() -> None:
    # A user typing "<|endoftext|>" must not end the count (nor raise, as tiktoken's encode does).
    assert count_tokens("<|endoftext|>", family="openai") == 7
    assert count_tokens("<|begin_of_text|>", family="llama") == 7


def test_empty_text_is_no_tokens() -> None:
    assert count_tokens("", family="openai") == 0


def test_unknown_family_is_refused() -> None:
    with pytest.raises(KeyError):
        count_tokens("hello", family="cohere")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_utf8_bytes_bound_the_count(family: str) -> None:
    # What prompt_token_bound relies on: no token of a byte-level BPE is shorter than a byte.
    text = "ab 12 ;; 日本 🎉\n\t" * 200 + MIXED * 50
    assert count_tokens(text, family=family) <= len(text.encode())


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-mini", "openai"),
        ("deepseek-chat", "openai"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama"),
        ("llama3.2:1b", "llama"),
        ("Qwen/Qwen2.5-Coder-32B-Instruct", "qwen"),
        ("anthropic/claude-sonnet-4", "anthropic"),
        ("google/gemma-3-27b-it", "gemini"),
    ],
)
def test_family_for_model_names(model: str, family: str) -> None:
    assert family_for(model=model) == family
