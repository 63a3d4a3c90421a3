"""Audio weights: every file pinned, and a file that is not the pinned one is never loaded."""

import asyncio
import hashlib

import numpy as np
import pytest

from apps.catalog.audio_models import AUDIO_MODELS
from apps.catalog.selectors import catalog_model
from apps.providers.audio import provider as audio_provider
from apps.providers.audio import weights
from apps.providers.audio.weights import AudioWeights, audio_weights_resolve
from apps.providers.errors import ProviderError
from apps.providers.local.weights import WeightIntegrityError, WeightSource, resolve_weights


def _source(path, data, *, digest=None):
    path.write_bytes(data)
    return WeightSource(path=str(path), sha256=digest or hashlib.sha256(data).hexdigest(),
                        filename=path.name)  # fmt: skip


def test_every_audio_model_names_pinned_files_that_are_installed():
    for entry in AUDIO_MODELS:
        files = weights.AUDIO_WEIGHTS[entry.local_route.weights].files
        assert files and all(len(source.sha256) == 64 for _, source in files)
        assert weights.audio_weights_installed(entry.local_route.weights)


def test_the_whisper_base_pin_is_the_assembled_file_models_md_measured():
    (_, model), *_ = weights.AUDIO_WEIGHTS["whisper-base"].files
    assert model.sha256 == "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    assert len(model.parts) == 2


def test_the_kokoro_pins_are_the_files_models_md_measured_and_its_voices_are_the_catalogs():
    model, vocabulary, voices = (source for _, source in weights.AUDIO_WEIGHTS["kokoro-ja"].files)
    assert model.sha256 == "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
    assert len(model.parts) == 4 and vocabulary.filename == "vocab.json"
    with np.load(resolve_weights(voices)) as styles:  # verified against its pin first
        assert tuple(styles.files) == catalog_model("plugsky-tts-ja").voices


def test_the_folder_links_to_the_verified_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGSKY_MODEL_DIR", str(tmp_path / "models"))
    source = _source(tmp_path / "real.bin", b"weights")
    monkeypatch.setitem(weights.AUDIO_WEIGHTS, "test", AudioWeights(files=(("model.bin", source),)))
    folder = audio_weights_resolve("test")
    assert folder == tmp_path / "models" / "test"
    assert (folder / "model.bin").resolve() == (tmp_path / "real.bin").resolve()
    assert audio_weights_resolve("test") == folder  # again: the link is kept


def test_a_file_with_another_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGSKY_MODEL_DIR", str(tmp_path / "models"))
    source = _source(tmp_path / "fake.bin", b"tampered", digest="0" * 64)
    monkeypatch.setitem(weights.AUDIO_WEIGHTS, "test", AudioWeights(files=(("model.bin", source),)))
    with pytest.raises(WeightIntegrityError):
        audio_weights_resolve("test")
    assert not (tmp_path / "models" / "test" / "model.bin").exists()


def test_the_provider_answers_503_for_a_model_that_fails_its_pin(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGSKY_MODEL_DIR", str(tmp_path / "models"))
    tts = AUDIO_MODELS[2]
    source = _source(tmp_path / "hibari.onnx", b"tampered", digest="0" * 64)
    monkeypatch.setitem(
        weights.AUDIO_WEIGHTS, "hibari-heart", AudioWeights(files=(("hibari.onnx", source),))
    )

    async def first_audio():
        return await anext(
            audio_provider.AudioProvider().speak(tts, "Hello.", speed=1.0, voice="heart")
        )

    with pytest.raises(ProviderError) as raised:
        asyncio.run(first_audio())
    assert (raised.value.status, raised.value.code) == (503, "model_unavailable")
