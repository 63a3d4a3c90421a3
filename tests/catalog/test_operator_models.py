"""An operator adds a local model by pointing the catalog at a GGUF file and its SHA-256."""

import asyncio
import json

import pytest
from django.test import override_settings

from apps.catalog import selectors
from apps.catalog.entries import Kind
from apps.providers.errors import ProviderError
from apps.providers.local import BUILTIN_WEIGHTS, resolve_weights
from apps.providers.local_provider import LocalProvider


@pytest.fixture
def catalog_file(tmp_path):
    gguf = resolve_weights(BUILTIN_WEIGHTS["smollm2-135m-instruct"])

    def write(sha256: str) -> str:
        path = tmp_path / "catalog.json"
        model = {"id": "acme-chat", "kind": "chat", "gguf": str(gguf), "sha256": sha256,
                 "context_length": 2048, "owned_by": "acme"}  # fmt: skip
        path.write_text(json.dumps({"models": [model]}))
        return str(path)

    yield write
    selectors.clear_cache()


def test_operator_model_is_listed_and_served(catalog_file):
    digest = BUILTIN_WEIGHTS["smollm2-135m-instruct"].sha256
    with override_settings(PLUGSKY_CATALOG_FILE=catalog_file(digest)):
        selectors.clear_cache()
        entry = selectors.catalog_model("acme-chat")
        assert entry is not None and entry.kind == Kind.CHAT and entry.owned_by == "acme"
        assert "acme-chat" in [e.id for e in selectors.catalog_models()]
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}

        async def first_chunks():
            return [chunk async for chunk in LocalProvider().chat_stream(entry, body)]

        chunks = asyncio.run(first_chunks())
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_operator_model_with_a_wrong_hash_refuses_to_load(catalog_file):
    with override_settings(PLUGSKY_CATALOG_FILE=catalog_file("0" * 64)):
        selectors.clear_cache()
        entry = selectors.catalog_model("acme-chat")
        assert entry is not None

        async def run():
            async for _ in LocalProvider().chat_stream(entry, {"messages": []}):
                pass

        with pytest.raises(ProviderError) as failure:
            asyncio.run(run())
    assert failure.value.status == 503
    assert failure.value.code == "model_unavailable"
    assert "SHA-256" in failure.value.message
