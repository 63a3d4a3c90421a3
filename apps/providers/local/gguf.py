"""The one fact the gateway needs from a GGUF header that llama.cpp does not expose: vocab size.

xllamacpp offers no tokenizer call, yet token ids (prompt token arrays, logit_bias keys) must be
checked against the vocabulary before the engine sees them: llama.cpp refuses out-of-range prompt
ids with an anonymous error and silently drops out-of-range logit_bias keys. The vocabulary is
the length of the ``tokenizer.ggml.tokens`` array in the file's metadata, which llama.cpp also
reads as its ``n_vocab``. Only the metadata before that key is read, never the tensors.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (little-endian files only).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

__all__ = ["GGUFError", "gguf_vocab_size"]

_MAGIC = b"GGUF"
_VERSIONS = {2, 3}
_TOKENS_KEY = "tokenizer.ggml.tokens"
_STRING, _ARRAY = 8, 9
# Byte sizes of the fixed-size value types, by GGUF type id.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class GGUFError(ValueError):
    """The file is not a GGUF whose vocabulary size can be read."""


def gguf_vocab_size(path: str | os.PathLike[str]) -> int:
    """The number of tokens in the GGUF's vocabulary (token ids are 0 .. n - 1)."""
    with open(path, "rb") as file:
        if file.read(4) != _MAGIC:
            raise GGUFError(f"{os.fspath(path)} is not a GGUF file")
        version = _u32(file)
        if version not in _VERSIONS:
            raise GGUFError(f"unsupported GGUF version {version} (or a big-endian file)")
        _u64(file)  # tensor count
        for _ in range(_u64(file)):
            key = _string(file)
            kind = _u32(file)
            if key == _TOKENS_KEY:
                if kind != _ARRAY:
                    raise GGUFError(f"{_TOKENS_KEY} is not an array")
                _u32(file)  # element type (strings)
                return _u64(file)
            _skip_value(file, kind)
    raise GGUFError(f"the metadata has no {_TOKENS_KEY}")


def _skip_value(file: BinaryIO, kind: int) -> None:
    if kind in _SCALAR_SIZES:
        file.seek(_SCALAR_SIZES[kind], os.SEEK_CUR)
    elif kind == _STRING:
        file.seek(_u64(file), os.SEEK_CUR)
    elif kind == _ARRAY:
        element, count = _u32(file), _u64(file)
        if element in _SCALAR_SIZES:
            file.seek(_SCALAR_SIZES[element] * count, os.SEEK_CUR)
        elif element == _STRING:
            for _ in range(count):
                file.seek(_u64(file), os.SEEK_CUR)
        else:  # arrays of arrays: no model in use has them before its tokens
            raise GGUFError(f"unsupported GGUF array element type {element}")
    else:
        raise GGUFError(f"unknown GGUF value type {kind}")


def _string(file: BinaryIO) -> str:
    return _exactly(file, _u64(file)).decode("utf-8", errors="replace")


def _u32(file: BinaryIO) -> int:
    return int(struct.unpack("<I", _exactly(file, 4))[0])


def _u64(file: BinaryIO) -> int:
    return int(struct.unpack("<Q", _exactly(file, 8))[0])


def _exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise GGUFError("the GGUF metadata ends early")
    return data
