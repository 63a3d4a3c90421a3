"""Well-known models of hosted vendors, listed and served only where their key is configured.

Prices are the vendors' list prices for standard (not batch, not cached) tokens, in micro-dollars
per million tokens, as their pricing pages published them in November 2025: openai.com/api/pricing,
anthropic.com/pricing (docs.claude.com "Pricing"), ai.google.dev/gemini-api/docs/pricing,
mistral.ai/pricing, groq.com/pricing, api-docs.deepseek.com/quick_start/pricing (V3.2-Exp, cache
miss) and together.ai/pricing. Gemini 2.5 Pro is priced at its tier for prompts up to 200k tokens.
Re-check them when a vendor changes its list: a customer is billed at these figures.

Capabilities are those the vendor's API accepts for the model through its provider here; the
"completions" word is left out where the vendor has no legacy /completions endpoint for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.catalog.entries import CatalogEntry, Kind, UpstreamRoute


@dataclass(frozen=True)
class VendorDefault:
    """Where a vendor's own SDK sends calls, and the variable that SDK reads to move them."""

    base_url: str
    base_url_env: str


# Applies to routes that name no base URL of their own, as each SDK does (OpenAI's includes /v1).
VENDOR_DEFAULTS: dict[str, VendorDefault] = {
    "openai": VendorDefault(base_url="https://api.openai.com/v1", base_url_env="OPENAI_BASE_URL"),
    "anthropic": VendorDefault(
        base_url="https://api.anthropic.com", base_url_env="ANTHROPIC_BASE_URL"
    ),
    "gemini": VendorDefault(
        base_url="https://generativelanguage.googleapis.com", base_url_env="GEMINI_BASE_URL"
    ),
}

_MISTRAL = "https://api.mistral.ai/v1"
_GROQ = "https://api.groq.com/openai/v1"
_DEEPSEEK = "https://api.deepseek.com/v1"
_TOGETHER = "https://api.together.xyz/v1"

_STREAMED_CHAT = frozenset({"chat", "streaming", "stop"})
_STRUCTURED = frozenset({"tools", "parallel_tool_calls", "json_mode", "json_schema"})
_OPENAI_CHAT = (
    _STREAMED_CHAT | _STRUCTURED | {"seed", "penalties", "logprobs", "logit_bias", "n", "vision"}
)
_ANTHROPIC_CHAT = _STREAMED_CHAT | {"tools", "parallel_tool_calls", "vision"}
_GEMINI_CHAT = _STREAMED_CHAT | _STRUCTURED | {"seed", "vision"}
_MISTRAL_CHAT = _STREAMED_CHAT | _STRUCTURED | {"penalties", "n"}
# Groq refuses logprobs, logit_bias and n > 1; Together serves the same weights as fallback.
_LLAMA_CHAT = _STREAMED_CHAT | {"seed", "tools", "json_mode"}


def _openai(model: str) -> UpstreamRoute:
    return UpstreamRoute(provider="openai", model=model, api_key_env="OPENAI_API_KEY")


def _anthropic(model: str) -> UpstreamRoute:
    return UpstreamRoute(provider="anthropic", model=model, api_key_env="ANTHROPIC_API_KEY")


def _gemini(model: str) -> UpstreamRoute:
    return UpstreamRoute(provider="gemini", model=model, api_key_env="GEMINI_API_KEY")


def _compatible(base_url: str, model: str, *, api_key_env: str) -> UpstreamRoute:
    """A vendor reached through its OpenAI-compatible API."""
    return UpstreamRoute(
        provider="openai", model=model, base_urls=(base_url,), api_key_env=api_key_env
    )


_OPENAI_MODELS = (
    CatalogEntry(
        id="gpt-4o",
        kind=Kind.CHAT,
        routes=(_openai("gpt-4o"),),
        context_length=128_000,
        max_output_tokens=16_384,
        description="OpenAI GPT-4o: multimodal flagship of the GPT-4 generation.",
        owned_by="openai",
        capabilities=_OPENAI_CHAT,
        input_price_micros_per_mtok=2_500_000,
        output_price_micros_per_mtok=10_000_000,
    ),
    CatalogEntry(
        id="gpt-4o-mini",
        kind=Kind.CHAT,
        routes=(_openai("gpt-4o-mini"),),
        context_length=128_000,
        max_output_tokens=16_384,
        description="OpenAI GPT-4o mini: small, fast and inexpensive, reads images.",
        owned_by="openai",
        capabilities=_OPENAI_CHAT,
        input_price_micros_per_mtok=150_000,
        output_price_micros_per_mtok=600_000,
    ),
    CatalogEntry(
        id="gpt-4.1",
        kind=Kind.CHAT,
        routes=(_openai("gpt-4.1"),),
        context_length=1_047_576,
        max_output_tokens=32_768,
        description="OpenAI GPT-4.1: long context (1M tokens), strong at code and instructions.",
        owned_by="openai",
        capabilities=_OPENAI_CHAT,
        input_price_micros_per_mtok=2_000_000,
        output_price_micros_per_mtok=8_000_000,
    ),
    CatalogEntry(
        id="gpt-4.1-mini",
        kind=Kind.CHAT,
        routes=(_openai("gpt-4.1-mini"),),
        context_length=1_047_576,
        max_output_tokens=32_768,
        description="OpenAI GPT-4.1 mini: GPT-4.1's long context at a fraction of its price.",
        owned_by="openai",
        capabilities=_OPENAI_CHAT,
        input_price_micros_per_mtok=400_000,
        output_price_micros_per_mtok=1_600_000,
    ),
    CatalogEntry(
        id="gpt-4.1-nano",
        kind=Kind.CHAT,
        routes=(_openai("gpt-4.1-nano"),),
        context_length=1_047_576,
        max_output_tokens=32_768,
        description="OpenAI GPT-4.1 nano: the fastest and cheapest GPT-4.1.",
        owned_by="openai",
        capabilities=_OPENAI_CHAT,
        input_price_micros_per_mtok=100_000,
        output_price_micros_per_mtok=400_000,
    ),
    CatalogEntry(
        id="text-embedding-3-small",
        kind=Kind.EMBEDDING,
        routes=(_openai("text-embedding-3-small"),),
        context_length=8191,
        dimensions=1536,
        description="OpenAI text-embedding-3-small: 1536 dimensions, shortenable.",
        owned_by="openai",
        capabilities=frozenset({"embeddings", "token_input"}),
        input_price_micros_per_mtok=20_000,
    ),
    CatalogEntry(
        id="text-embedding-3-large",
        kind=Kind.EMBEDDING,
        routes=(_openai("text-embedding-3-large"),),
        context_length=8191,
        dimensions=3072,
        description="OpenAI text-embedding-3-large: 3072 dimensions, shortenable.",
        owned_by="openai",
        capabilities=frozenset({"embeddings", "token_input"}),
        input_price_micros_per_mtok=130_000,
    ),
)

_ANTHROPIC_MODELS = (
    CatalogEntry(
        id="claude-sonnet-4-5",
        kind=Kind.CHAT,
        routes=(_anthropic("claude-sonnet-4-5"),),
        context_length=200_000,
        max_output_tokens=64_000,
        description="Anthropic Claude Sonnet 4.5: agents and code.",
        owned_by="anthropic",
        capabilities=_ANTHROPIC_CHAT,
        input_price_micros_per_mtok=3_000_000,
        output_price_micros_per_mtok=15_000_000,
    ),
    CatalogEntry(
        id="claude-haiku-4-5",
        kind=Kind.CHAT,
        routes=(_anthropic("claude-haiku-4-5"),),
        context_length=200_000,
        max_output_tokens=64_000,
        description="Anthropic Claude Haiku 4.5: the fastest Claude.",
        owned_by="anthropic",
        capabilities=_ANTHROPIC_CHAT,
        input_price_micros_per_mtok=1_000_000,
        output_price_micros_per_mtok=5_000_000,
    ),
    CatalogEntry(
        id="claude-opus-4-1",
        kind=Kind.CHAT,
        routes=(_anthropic("claude-opus-4-1"),),
        context_length=200_000,
        max_output_tokens=32_000,
        description="Anthropic Claude Opus 4.1: the most capable Claude of its generation.",
        owned_by="anthropic",
        capabilities=_ANTHROPIC_CHAT,
        input_price_micros_per_mtok=15_000_000,
        output_price_micros_per_mtok=75_000_000,
    ),
)

_GEMINI_MODELS = (
    CatalogEntry(
        id="gemini-2.5-pro",
        kind=Kind.CHAT,
        routes=(_gemini("gemini-2.5-pro"),),
        context_length=1_048_576,
        max_output_tokens=65_536,
        description="Google Gemini 2.5 Pro: thinking model, long context.",
        owned_by="google",
        capabilities=_GEMINI_CHAT,
        input_price_micros_per_mtok=1_250_000,
        output_price_micros_per_mtok=10_000_000,
    ),
    CatalogEntry(
        id="gemini-2.5-flash",
        kind=Kind.CHAT,
        routes=(_gemini("gemini-2.5-flash"),),
        context_length=1_048_576,
        max_output_tokens=65_536,
        description="Google Gemini 2.5 Flash: fast thinking model, long context.",
        owned_by="google",
        capabilities=_GEMINI_CHAT,
        input_price_micros_per_mtok=300_000,
        output_price_micros_per_mtok=2_500_000,
    ),
    CatalogEntry(
        id="gemini-2.0-flash",
        kind=Kind.CHAT,
        routes=(_gemini("gemini-2.0-flash"),),
        context_length=1_048_576,
        max_output_tokens=8192,
        description="Google Gemini 2.0 Flash: fast multimodal model.",
        owned_by="google",
        capabilities=_GEMINI_CHAT,
        input_price_micros_per_mtok=100_000,
        output_price_micros_per_mtok=400_000,
    ),
    CatalogEntry(
        id="gemini-embedding-001",
        kind=Kind.EMBEDDING,
        routes=(_gemini("gemini-embedding-001"),),
        context_length=2048,
        dimensions=3072,
        description="Google gemini-embedding-001: multilingual text embeddings, 3072 dimensions.",
        owned_by="google",
        capabilities=frozenset({"embeddings"}),
        input_price_micros_per_mtok=150_000,
    ),
)

_COMPATIBLE_MODELS = (
    CatalogEntry(
        id="mistral-large-latest",
        kind=Kind.CHAT,
        routes=(_compatible(_MISTRAL, "mistral-large-latest", api_key_env="MISTRAL_API_KEY"),),
        context_length=131_072,
        description="Mistral Large: Mistral AI's flagship model.",
        owned_by="mistralai",
        capabilities=_MISTRAL_CHAT,
        input_price_micros_per_mtok=2_000_000,
        output_price_micros_per_mtok=6_000_000,
    ),
    CatalogEntry(
        id="mistral-small-latest",
        kind=Kind.CHAT,
        routes=(_compatible(_MISTRAL, "mistral-small-latest", api_key_env="MISTRAL_API_KEY"),),
        context_length=131_072,
        description="Mistral Small: small, fast and multimodal.",
        owned_by="mistralai",
        capabilities=_MISTRAL_CHAT | {"vision"},
        input_price_micros_per_mtok=100_000,
        output_price_micros_per_mtok=300_000,
    ),
    CatalogEntry(
        id="mistral-embed",
        kind=Kind.EMBEDDING,
        routes=(_compatible(_MISTRAL, "mistral-embed", api_key_env="MISTRAL_API_KEY"),),
        context_length=8192,
        dimensions=1024,
        description="Mistral Embed: text embeddings, 1024 dimensions.",
        owned_by="mistralai",
        capabilities=frozenset({"embeddings"}),
        input_price_micros_per_mtok=100_000,
    ),
    CatalogEntry(
        id="deepseek-chat",
        kind=Kind.CHAT,
        routes=(_compatible(_DEEPSEEK, "deepseek-chat", api_key_env="DEEPSEEK_API_KEY"),),
        context_length=128_000,
        max_output_tokens=8192,
        description="DeepSeek-V3.2 (non-thinking mode).",
        owned_by="deepseek",
        capabilities=_STREAMED_CHAT | {"penalties", "logprobs", "tools", "json_mode"},
        input_price_micros_per_mtok=280_000,
        output_price_micros_per_mtok=420_000,
    ),
    CatalogEntry(
        id="llama-3.3-70b",
        kind=Kind.CHAT,
        routes=(
            _compatible(_GROQ, "llama-3.3-70b-versatile", api_key_env="GROQ_API_KEY"),
            UpstreamRoute(
                provider="openai",
                model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
                base_urls=(_TOGETHER,),
                api_key_env="TOGETHER_API_KEY",
                input_price_micros_per_mtok=880_000,
                output_price_micros_per_mtok=880_000,
            ),
        ),
        context_length=131_072,
        max_output_tokens=32_768,
        description="Meta Llama 3.3 70B Instruct on Groq, falling back to Together AI.",
        owned_by="meta",
        capabilities=_LLAMA_CHAT,
        input_price_micros_per_mtok=590_000,
        output_price_micros_per_mtok=790_000,
    ),
    CatalogEntry(
        id="llama-3.1-8b-instant",
        kind=Kind.CHAT,
        routes=(_compatible(_GROQ, "llama-3.1-8b-instant", api_key_env="GROQ_API_KEY"),),
        context_length=131_072,
        max_output_tokens=131_072,
        description="Meta Llama 3.1 8B Instruct on Groq.",
        owned_by="meta",
        capabilities=_LLAMA_CHAT,
        input_price_micros_per_mtok=50_000,
        output_price_micros_per_mtok=80_000,
    ),
)

UPSTREAM_MODELS: tuple[CatalogEntry, ...] = (
    _OPENAI_MODELS + _ANTHROPIC_MODELS + _GEMINI_MODELS + _COMPATIBLE_MODELS
)
