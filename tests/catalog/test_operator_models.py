"""An operator adds a local model by pointing the catalog at a GGUF file and its SHA-256.

The engine reads the same catalog file: it is the engine that loads (and checks) the file, and
the web that lists and routes the model."""

import asyncio
import json

import pytest
from django.test import override_settings

from apps.catalog import selectors
from apps.catalog.entries import Kind
from apps.providers.errors import ProviderError
from apps.providers.local import BUILTIN_WEIGHTS, resolve_weights
from apps.providers.registry import local_engine
from tests.live import run_engine


@pytest.fixture
def operator_catalog(tmp_path):
    """Write a catalog with one operator model; yield (catalog path, an engine serving it)."""
    gguf = resolve_weights(BUILTIN_WEIGHTS["smollm2-135m-instruct"])
    started = []

    def write(sha256: str) -> tuple[str, str]:
        path = tmp_path / "catalog.json"
        model = {"id": "acme-chat", "kind": "chat", "gguf": str(gguf), "sha256": sha256,
                 "context_length": 2048, "owned_by": "acme"}  # fmt: skip
        path.write_text(json.dumps({"models": [model]}))
        engine = run_engine({"PLUGSKY_CATALOG_FILE": str(path)})
        started.append(engine)
        return str(path), next(engine)

    yield write
    for engine in started:
        engine.close()
    selectors.clear_cache()


def _chunks(entry, body):
    async def collect():
        return [chunk async for chunk in local_engine().chat_stream(entry, body)]

    return asyncio.run(collect())


def test_operator_model_is_listed_and_served(operator_catalog):
    path, engine_url = operator_catalog(BUILTIN_WEIGHTS["smollm2-135m-instruct"].sha256)
    with override_settings(PLUGSKY_CATALOG_FILE=path, PLUGSKY_ENGINE_URL=engine_url):
        selectors.clear_cache()
        entry = selectors.catalog_model("acme-chat")
        assert entry is not None and entry.kind == Kind.CHAT and entry.owned_by == "acme"
        assert "acme-chat" in [e.id for e in selectors.catalog_models()]
        chunks = _chunks(entry, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_operator_model_with_a_wrong_hash_refuses_to_load(operator_catalog):
    path, engine_url = operator_catalog("0" * 64)
    with override_settings(PLUGSKY_CATALOG_FILE=path, PLUGSKY_ENGINE_URL=engine_url):
        selectors.clear_cache()
        entry = selectors.catalog_model("acme-chat")
        assert entry is not None
        with pytest.raises(ProviderError) as failure:
            _chunks(entry, {"messages": []})
    assert failure.value.status == 503
    assert failure.value.code == "model_unavailable"
    assert "SHA-256" in failure.value.message
