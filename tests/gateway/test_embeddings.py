import base64

import numpy as np
import pytest

from apps.billing.pricing import cost_header_value
from apps.usage.models import UsageRecord
from tests.openapi import validate_response

pytestmark = pytest.mark.xdist_group("live")


def _embed(api, **body):
    return api.post("/embeddings", json=body)


@pytest.mark.parametrize("model", ["plugsky-embed", "plugsky-embed-minilm"])
def test_embeddings_match_the_spec_and_mean_something(api, model):
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell."]
    response = _embed(api, model=model, input=texts)
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("post", "/embeddings", 200, body)
    vectors = np.array([item["embedding"] for item in body["data"]])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 6
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert record.prompt_tokens == body["usage"]["prompt_tokens"]
    assert record.completion_tokens == 0
    assert response.headers["x-plugsky-cost"] == cost_header_value(record.cost_micros)
    assert body["usage"]["cost"] == record.cost_micros / 1_000_000


def test_base64_is_little_endian_float32_of_the_same_vector(api):
    floats = _embed(api, model="plugsky-embed", input="hello world").json()
    encoded = _embed(
        api, model="plugsky-embed", input="hello world", encoding_format="base64"
    ).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats["data"][0]["embedding"], atol=1e-6)


def test_dimensions_shortens_and_renormalises(api):
    body = _embed(api, model="plugsky-embed", input="hello", dimensions=64).json()
    vector = np.array(body["data"][0]["embedding"])
    assert vector.shape == (64,)
    assert np.isclose(np.linalg.norm(vector), 1, atol=1e-4)


def test_token_array_inputs(api):
    body = _embed(api, model="plugsky-embed-minilm", input=[[101, 7592, 2088, 102], [101, 102]])
    assert body.status_code == 200, body.text
    assert len(body.json()["data"]) == 2


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "plugsky-embed"}, 400, "input"),
        ({"model": "plugsky-embed", "input": []}, 400, "input"),
        ({"model": "plugsky-embed", "input": [""]}, 400, "input"),
        ({"model": "plugsky-embed", "input": ["x"] * 2049}, 400, "input"),
        ({"model": "plugsky-embed", "input": "x", "encoding_format": "hex"}, 400,
         "encoding_format"),
        ({"model": "plugsky-embed", "input": "x", "dimensions": 1000}, 400, "dimensions"),
        ({"model": "plugsky-nano", "input": "x"}, 400, "model"),
        ({"model": "nope", "input": "x"}, 404, "model"),
    ],
)  # fmt: skip
def test_invalid_embedding_requests(api, body, status, param):
    response = api.post("/embeddings", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


BOUND_CASES = ["a", " ", "a b c d e f", "x" * 300, "Ünïcödé ✓ — ﬁne", "ﷺ", "㌀㍻", "\x00", "日本語"]


@pytest.mark.parametrize(
    ("model", "embedder_class"),
    [("plugsky-embed", "E5Embedder"), ("plugsky-embed-minilm", "MiniLMEmbedder")],
)
def test_the_hold_bound_of_an_input_is_at_least_what_the_model_counts(model, embedder_class):
    from asgiref.sync import async_to_sync

    from apps.catalog.selectors import catalog_model
    from apps.protocol.openai import EmbeddingRequest
    from apps.providers import local
    from apps.providers.registry import serving_provider

    entry = catalog_model(model)
    provider = async_to_sync(serving_provider)(entry)
    embedder = getattr(local, embedder_class)()
    for text in BOUND_CASES:
        counted = embedder.count_tokens(text.replace("\x00", " "))
        request = EmbeddingRequest(model=model, input=text)
        assert counted <= provider.prompt_token_bound(request), text
