"""The official openai Python SDK against a live server, changing only base_url and the key."""

import base64

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.xdist_group("live")


@pytest.fixture
def client(live_server_url, live_key):
    _, raw_key = live_key
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw_key, max_retries=0)


def test_models(client):
    ids = [model.id for model in client.models.list()]
    assert "plugsky-nano" in ids
    assert client.models.retrieve("plugsky-nano").owned_by == "plugsky"


def test_chat(client):
    completion = client.chat.completions.create(
        model="plugsky-nano",
        messages=[{"role": "user", "content": "What is 2+2?"}],
        max_tokens=10,
        temperature=0,
    )
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens <= 10


def test_chat_streaming(client):
    stream = client.chat.completions.create(
        model="plugsky-nano",
        messages=[{"role": "user", "content": "Write a long story about the sea."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_completions(client):
    completion = client.completions.create(
        model="plugsky-base", prompt="Once upon a time", max_tokens=4, temperature=0
    )
    assert completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens == 4


def test_embeddings_with_default_base64(client):
    response = client.embeddings.create(model="plugsky-embed", input=["hello", "world"])
    assert len(response.data) == 2
    assert len(response.data[0].embedding) == 384
    assert np.isclose(np.linalg.norm(response.data[0].embedding), 1, atol=1e-3)


def test_embeddings_float_equals_base64(client):
    floats = (
        client.embeddings.create(model="plugsky-embed", input="hello", encoding_format="float")
        .data[0]
        .embedding
    )
    raw = client.with_raw_response.embeddings.create(
        model="plugsky-embed", input="hello", encoding_format="base64"
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert np.allclose(np.frombuffer(base64.b64decode(encoded), "<f4"), floats, atol=1e-6)


def test_error_classes(client, live_server_url):
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="plugsky-nano", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    assert bad.value.param == "temperature"
    wrong_key = openai.OpenAI(
        base_url=f"{live_server_url}/v1", api_key="sk-live-" + "x" * 43, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        wrong_key.models.list()
    assert unauthorized.value.code == "invalid_api_key"
