"""The local inference engine: built-in models that run in-process, with no network.

- ``LlamaRuntime``: GGUF chat/completion models on llama.cpp (xllamacpp), async and streaming.
- ``E5Embedder`` / ``MiniLMEmbedder``: embedding models behind the ``Embedder`` interface.
- ``WeightSource`` / ``resolve_weights``: where weights come from, verified against pinned SHA-256.
- ``EngineError``: every failure a request can see, carrying its HTTP status and OpenAI fields.
"""

from apps.providers.local.embedders import E5Embedder, Embedder, MiniLMEmbedder
from apps.providers.local.errors import EngineError
from apps.providers.local.llama import LlamaRuntime
from apps.providers.local.weights import (
    BUILTIN_WEIGHTS,
    MODEL_DIR_ENV,
    WeightIntegrityError,
    WeightsError,
    WeightsNotInstalledError,
    WeightSource,
    is_installed,
    model_dir,
    resolve_weights,
)

__all__ = [
    "BUILTIN_WEIGHTS",
    "MODEL_DIR_ENV",
    "E5Embedder",
    "Embedder",
    "EngineError",
    "LlamaRuntime",
    "MiniLMEmbedder",
    "WeightIntegrityError",
    "WeightSource",
    "WeightsError",
    "WeightsNotInstalledError",
    "is_installed",
    "model_dir",
    "resolve_weights",
]
