"""The vocabulary size read from a GGUF header, as llama.cpp counts it, without loading tensors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from apps.providers.local.gguf import GGUFError, gguf_vocab_size
from apps.providers.local.weights import BUILTIN_WEIGHTS, resolve_weights

pytestmark = pytest.mark.xdist_group("local-engine")


@pytest.mark.parametrize(
    ("weights", "vocab"),
    [
        ("smollm2-135m-instruct", 49152),
        ("qwen2.5-coder-0.5b-instruct", 151936),
        ("gemma-3-270m", 262144),
    ],
)
def test_vocab_sizes_of_the_builtin_models(weights, vocab):
    # Checked against llama.cpp: the last id is accepted in a prompt, the next one refused.
    assert gguf_vocab_size(resolve_weights(BUILTIN_WEIGHTS[weights])) == vocab


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _gguf(*pairs: bytes, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, 0, len(pairs)) + b"".join(pairs)


def test_metadata_before_the_tokens_is_skipped(tmp_path: Path):
    path = tmp_path / "model.gguf"
    path.write_bytes(
        _gguf(
            _string("general.name") + struct.pack("<I", 8) + _string("tiny"),
            _string("some.floats") + struct.pack("<IIQ", 9, 6, 3) + bytes(12),
            _string("some.names") + struct.pack("<IIQ", 9, 8, 2) + _string("a") + _string("bc"),
            _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 7),
        )
    )
    assert gguf_vocab_size(path) == 7


@pytest.mark.parametrize(
    "data",
    [
        b"not a gguf at all",
        _gguf(version=99),
        _gguf(_string("general.name") + struct.pack("<I", 8) + _string("no tokens")),
        _gguf(_string("tokenizer.ggml.tokens") + struct.pack("<I", 4) + bytes(4)),
        _gguf(_string("x") + struct.pack("<I", 42)),
        b"GGUF" + struct.pack("<I", 3),  # ends early
    ],
)
def test_files_without_a_readable_vocabulary_raise(tmp_path: Path, data: bytes):
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError):
        gguf_vocab_size(path)
