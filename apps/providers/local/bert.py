"""A BERT sentence encoder in numpy: enough of the architecture to run all-MiniLM-L6-v2.

Post-LayerNorm BERT (embeddings, then per layer: self-attention, add & norm, GELU feed-forward,
add & norm), mean pooling over real tokens and L2 normalisation, reading Hugging Face's
``BertModel`` tensor names. float32 throughout, as the weights are stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BertEncoder"]

# Keeps a batch's attention scores (batch x heads x T x T floats) to a few tens of MB.
_MAX_BATCH_TOKENS = 4096
_MASKED = np.float32(-1e9)


@dataclass(frozen=True)
class _Layer:
    qkv_weight: np.ndarray  # [hidden, 3 * hidden]: query, key and value in one matmul
    qkv_bias: np.ndarray
    attention_out_weight: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm_weight: np.ndarray
    attention_norm_bias: np.ndarray
    ffn_in_weight: np.ndarray
    ffn_in_bias: np.ndarray
    ffn_out_weight: np.ndarray
    ffn_out_bias: np.ndarray
    output_norm_weight: np.ndarray
    output_norm_bias: np.ndarray


class BertEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a ``BertModel`` state dict."""

    def __init__(
        self, tensors: Mapping[str, np.ndarray], *, n_heads: int = 12, eps: float = 1e-12
    ) -> None:
        self._word = _f32(tensors["embeddings.word_embeddings.weight"])
        self._position = _f32(tensors["embeddings.position_embeddings.weight"])
        self._token_type = _f32(tensors["embeddings.token_type_embeddings.weight"])[0]
        self._norm_weight = _f32(tensors["embeddings.LayerNorm.weight"])
        self._norm_bias = _f32(tensors["embeddings.LayerNorm.bias"])
        self._layers = [_layer(tensors, f"encoder.layer.{i}.") for i in range(_n_layers(tensors))]
        self._hidden = self._word.shape[1]
        if self._hidden % n_heads:
            raise ValueError(f"hidden size {self._hidden} is not divisible by {n_heads} heads")
        self._n_heads = n_heads
        self._eps = eps

    @property
    def dim(self) -> int:
        return self._hidden

    @property
    def max_positions(self) -> int:
        return int(self._position.shape[0])

    def embed(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """One vector per token sequence (specials included), in input order."""
        out = np.empty((len(sequences), self._hidden), dtype=np.float32)
        for indices in _length_batches(sequences):
            ids, mask = _padded([sequences[i] for i in indices])
            out[indices] = self.embed_padded(ids, mask)
        return out

    def embed_padded(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``ids`` and boolean ``mask`` of shape [batch, T] -> [batch, hidden] unit vectors."""
        if ids.shape[1] > self.max_positions:
            raise ValueError(f"sequences are limited to {self.max_positions} tokens")
        states = self._embeddings(ids)
        # Padding must never be attended to: it gets a huge negative score before the softmax.
        key_bias = np.where(mask, np.float32(0), _MASKED)[:, None, None, :]
        for layer in self._layers:
            states = self._layer_forward(states, layer, key_bias)
        return _normalised(_mean_pooled(states, mask))

    def _embeddings(self, ids: np.ndarray) -> np.ndarray:
        states = self._word[ids] + self._position[: ids.shape[1]] + self._token_type
        return _layer_norm(states, self._norm_weight, self._norm_bias, self._eps)

    def _layer_forward(self, states: np.ndarray, layer: _Layer, key_bias: np.ndarray) -> np.ndarray:
        attended = self._attention(states, layer, key_bias)
        states = _layer_norm(
            states + attended, layer.attention_norm_weight, layer.attention_norm_bias, self._eps
        )
        hidden = _gelu(_linear(states, layer.ffn_in_weight, layer.ffn_in_bias))
        output = _linear(hidden, layer.ffn_out_weight, layer.ffn_out_bias)
        return _layer_norm(
            states + output, layer.output_norm_weight, layer.output_norm_bias, self._eps
        )

    def _attention(self, states: np.ndarray, layer: _Layer, key_bias: np.ndarray) -> np.ndarray:
        batch, length, hidden = states.shape
        head_dim = hidden // self._n_heads
        qkv = _linear(states, layer.qkv_weight, layer.qkv_bias)
        # -> [3, batch, heads, T, head_dim]
        qkv = qkv.reshape(batch, length, 3, self._n_heads, head_dim).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        scores = query @ key.transpose(0, 1, 3, 2)
        scores *= np.float32(1.0 / np.sqrt(head_dim))
        scores += key_bias
        context = _softmax(scores) @ value
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        return _linear(context, layer.attention_out_weight, layer.attention_out_bias)


def _linear(states: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    # One 2-D GEMM over all tokens is several times faster than numpy's per-row batched matmul.
    flat = states.reshape(-1, states.shape[-1]) @ weight
    flat += bias
    return flat.reshape(*states.shape[:-1], weight.shape[1])


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _n_layers(tensors: Mapping[str, np.ndarray]) -> int:
    count = 0
    while f"encoder.layer.{count}.attention.self.query.weight" in tensors:
        count += 1
    if count == 0:
        raise ValueError("no encoder layers found: not a BertModel state dict")
    return count


def _layer(tensors: Mapping[str, np.ndarray], prefix: str) -> _Layer:
    def weight(name: str) -> np.ndarray:
        # torch's Linear stores [out, in]; we multiply activations on the left, so transpose.
        return _f32(tensors[f"{prefix}{name}.weight"].T)

    def vector(name: str) -> np.ndarray:
        return _f32(tensors[f"{prefix}{name}"])

    projections = ("attention.self.query", "attention.self.key", "attention.self.value")
    return _Layer(
        qkv_weight=np.concatenate([weight(name) for name in projections], axis=1),
        qkv_bias=np.concatenate([vector(f"{name}.bias") for name in projections]),
        attention_out_weight=weight("attention.output.dense"),
        attention_out_bias=vector("attention.output.dense.bias"),
        attention_norm_weight=vector("attention.output.LayerNorm.weight"),
        attention_norm_bias=vector("attention.output.LayerNorm.bias"),
        ffn_in_weight=weight("intermediate.dense"),
        ffn_in_bias=vector("intermediate.dense.bias"),
        ffn_out_weight=weight("output.dense"),
        ffn_out_bias=vector("output.dense.bias"),
        output_norm_weight=vector("output.LayerNorm.weight"),
        output_norm_bias=vector("output.LayerNorm.bias"),
    )


def _length_batches(sequences: Sequence[Sequence[int]]) -> Iterator[list[int]]:
    """Indices grouped by similar length, so little compute goes to padding."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batch: list[int] = []
    for index in order:
        longest = len(sequences[index])  # sorted: the newcomer is the longest so far
        if batch and (len(batch) + 1) * longest > _MAX_BATCH_TOKENS:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def _padded(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(ids) for ids in sequences)
    ids = np.zeros((len(sequences), length), dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=bool)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = True
    return ids, mask


def _layer_norm(states: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = states.mean(axis=-1, keepdims=True)
    centred = states - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * weight + bias


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf computed as numpy has none."""
    phi = _erf(x * np.float32(1.0 / np.sqrt(2.0)))
    phi += np.float32(1.0)
    phi *= np.float32(0.5)
    phi *= x
    return phi


# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32's resolution near 1.
_ERF_P = np.float32(0.3275911)
_ERF_COEFFICIENTS = tuple(
    np.float32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)


def _erf(x: np.ndarray) -> np.ndarray:
    # In-place steps: this runs over every FFN activation, so temporaries cost real time.
    magnitude = np.abs(x)
    t = magnitude * _ERF_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _ERF_COEFFICIENTS[0])
    for coefficient in _ERF_COEFFICIENTS[1:]:
        poly *= t
        poly += coefficient
    poly *= t
    np.square(magnitude, out=magnitude)
    np.negative(magnitude, out=magnitude)
    np.exp(magnitude, out=magnitude)
    poly *= magnitude
    np.subtract(np.float32(1.0), poly, out=poly)
    return np.copysign(poly, x, out=poly)


def _mean_pooled(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[:, :, None].astype(np.float32)
    counts = np.maximum(weights.sum(axis=1), np.float32(1e-9))
    return (states * weights).sum(axis=1) / counts


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
