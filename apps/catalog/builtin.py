"""The built-in models: small open models that run on the local engine with no network."""

from __future__ import annotations

from apps.catalog.audio_models import AUDIO_MODELS
from apps.catalog.entries import CatalogEntry, Kind, LocalRoute

_CHAT = frozenset({"chat", "completions", "streaming", "stop", "seed", "penalties", "logprobs",
                   "logit_bias", "n"})  # fmt: skip
# Calls and JSON by constrained decoding: plugsky-nano can be held to the format, but its
# arguments and answers are rarely useful.
_STRUCTURED = frozenset({"tools", "parallel_tool_calls", "json_mode", "json_schema"})

BUILTIN_MODELS: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        id="plugsky-nano",
        kind=Kind.CHAT,
        routes=(LocalRoute(runtime="llama", weights="smollm2-135m-instruct", parallel_slots=4),),
        context_length=4096,
        description="SmolLM2-135M-Instruct (Q4_1). Tiny and fast; fluent but weak at reasoning.",
        capabilities=_CHAT | _STRUCTURED,
        aliases=("smollm2-135m-instruct",),
        input_price_micros_per_mtok=20_000,
        output_price_micros_per_mtok=40_000,
    ),
    CatalogEntry(
        id="plugsky-mini",
        kind=Kind.CHAT,
        routes=(
            LocalRoute(runtime="llama", weights="qwen2.5-coder-0.5b-instruct", parallel_slots=4),
        ),
        context_length=4096,
        description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M). Follows instructions, writes code.",
        capabilities=_CHAT | _STRUCTURED,
        aliases=("qwen2.5-coder-0.5b-instruct",),
        input_price_micros_per_mtok=50_000,
        output_price_micros_per_mtok=100_000,
    ),
    CatalogEntry(
        id="plugsky-pro",
        kind=Kind.CHAT,
        routes=(
            LocalRoute(runtime="llama", weights="qwen2.5-coder-1.5b-instruct", parallel_slots=4),
        ),
        context_length=4096,
        description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M). The strongest built-in; optional "
        "install (`make models-pro`).",
        capabilities=_CHAT | _STRUCTURED,
        aliases=("qwen2.5-coder-1.5b-instruct",),
        input_price_micros_per_mtok=100_000,
        output_price_micros_per_mtok=200_000,
    ),
    CatalogEntry(
        id="plugsky-vision",
        kind=Kind.CHAT,
        routes=(
            LocalRoute(runtime="llama", weights="qwen2.5-coder-0.5b-instruct", parallel_slots=4),
        ),
        context_length=4096,
        description="Reads images for Qwen2.5-Coder-0.5B-Instruct. Each image is passed through "
        "an OCR model (PP-OCRv4) and measured; the chat model gets the text found in the image, "
        "its size and its main colours. It CAN read printed text (English, Chinese), and tell "
        "size and colours. It CANNOT recognise objects, people, animals, scenes, charts or "
        "handwriting, and does not see layout beyond the order of text lines.",
        capabilities=_CHAT | _STRUCTURED | {"vision"},
        aliases=("plugsky-mini-vision",),
        input_price_micros_per_mtok=50_000,
        output_price_micros_per_mtok=100_000,
    ),
    CatalogEntry(
        id="plugsky-base",
        kind=Kind.COMPLETION,
        routes=(LocalRoute(runtime="llama", weights="gemma-3-270m", parallel_slots=4),),
        context_length=4096,
        description="Gemma-3-270M base (Q4_K_M): continues text; /v1/completions only.",
        capabilities=frozenset(
            {"completions", "streaming", "stop", "seed", "penalties", "logprobs", "logit_bias"}
        ),
        aliases=("gemma-3-270m",),
        input_price_micros_per_mtok=20_000,
        output_price_micros_per_mtok=40_000,
    ),
    CatalogEntry(
        id="plugsky-embed",
        kind=Kind.EMBEDDING,
        routes=(LocalRoute(runtime="e5", weights="multilingual-e5-small"),),
        context_length=512,
        dimensions=384,
        description="multilingual-e5-small (4-bit): multilingual text embeddings, 384 dimensions.",
        capabilities=frozenset({"embeddings"}),
        aliases=("multilingual-e5-small",),
        input_price_micros_per_mtok=10_000,
    ),
    CatalogEntry(
        id="plugsky-embed-minilm",
        kind=Kind.EMBEDDING,
        routes=(LocalRoute(runtime="minilm", weights="all-minilm-l6-v2"),),
        context_length=256,
        dimensions=384,
        description="all-MiniLM-L6-v2: English sentence embeddings, 384 dimensions; accepts "
        "token arrays.",
        capabilities=frozenset({"embeddings", "token_input"}),
        aliases=("all-minilm-l6-v2",),
        input_price_micros_per_mtok=10_000,
    ),
    *AUDIO_MODELS,
)
