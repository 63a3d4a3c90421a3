"""Embedders: unit vectors of the right shape, real semantics, token accounting, input errors."""

from __future__ import annotations

import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from apps.providers.local import BUILTIN_WEIGHTS, E5Embedder, EngineError, MiniLMEmbedder
from apps.providers.local.weights import resolve_weights

pytestmark = pytest.mark.xdist_group("local-engine")


PARAPHRASES = ("How do I reset my password?", "What are the steps to change my password?")
UNRELATED = "The volcano erupted and covered the village in ash."


@pytest.fixture(scope="module")
def e5() -> Iterator[E5Embedder]:
    embedder = E5Embedder()
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def minilm() -> Iterator[MiniLMEmbedder]:
    embedder = MiniLMEmbedder()
    yield embedder
    embedder.close()


def _assert_unit_rows(vectors: np.ndarray, count: int, dim: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (count, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def _similarities(embedder: E5Embedder | MiniLMEmbedder) -> tuple[float, float]:
    vectors, _ = await embedder.embed([*PARAPHRASES, UNRELATED])
    return float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])


@pytest.mark.asyncio
async def test_e5_embeds_unit_vectors_and_counts_tokens(e5: E5Embedder) -> None:
    texts = ["hello world", "Olá, mundo", "你好世界"]

    vectors, tokens = await e5.embed(texts)

    _assert_unit_rows(vectors, 3, e5.dim)
    assert tokens == sum(e5.count_tokens(text) for text in texts)
    # "passage: " and <s> </s> are part of what the model processes, and of the count.
    assert e5.count_tokens("") > 2


@pytest.mark.asyncio
async def test_e5_paraphrases_score_above_unrelated_text(e5: E5Embedder) -> None:
    paraphrase, unrelated = await _similarities(e5)

    # E5 similarities are compressed into roughly 0.7-1.0; the ordering is what carries meaning.
    assert paraphrase > unrelated + 0.1


@pytest.mark.asyncio
async def test_e5_refuses_token_arrays(e5: E5Embedder) -> None:
    with pytest.raises(EngineError) as failure:
        await e5.embed([[1, 2, 3]])

    assert (failure.value.status, failure.value.param) == (400, "input")


@pytest.mark.asyncio
async def test_e5_refuses_inputs_longer_than_its_context(e5: E5Embedder) -> None:
    with pytest.raises(EngineError) as failure:
        await e5.embed(["short", "word " * 600])

    assert failure.value.status == 400
    assert (failure.value.code, failure.value.param) == ("context_length_exceeded", "input")
    assert "Input 1" in failure.value.message


@pytest.mark.asyncio
async def test_query_mode_embeds_differently(e5: E5Embedder) -> None:
    queries = E5Embedder(mode="query")
    as_query, _ = await queries.embed([PARAPHRASES[0]])
    as_passage, _ = await e5.embed([PARAPHRASES[0]])
    queries.close()

    assert float(as_query[0] @ as_passage[0]) < 0.999


@pytest.mark.asyncio
async def test_minilm_reproduces_sentence_transformers_scores(minilm: MiniLMEmbedder) -> None:
    # Cosine scores published for sentence-transformers/all-MiniLM-L6-v2 (torch) on the
    # sentence-transformers similarity example; the numpy encoder must land on the same values.
    published = [
        ("The new movie is awesome", "The new movie is so great", 0.8939),
        ("The cat sits outside", "The cat plays in the garden", 0.6788),
        ("I love pasta", "Do you like pizza?", 0.5096),
        ("I love pasta", "The new movie is so great", 0.2560),
        ("A man is playing guitar", "The cat plays in the garden", 0.2105),
        ("The cat sits outside", "A woman watches TV", 0.1310),
    ]
    left, _ = await minilm.embed([a for a, _, _ in published])
    right, _ = await minilm.embed([b for _, b, _ in published])

    scores = np.sum(left * right, axis=1)

    np.testing.assert_allclose(scores, [score for *_, score in published], atol=6e-4)


@pytest.mark.asyncio
async def test_minilm_paraphrases_score_far_above_unrelated_text(minilm: MiniLMEmbedder) -> None:
    paraphrase, unrelated = await _similarities(minilm)

    assert paraphrase > 0.6
    assert unrelated < 0.2


@pytest.mark.asyncio
async def test_minilm_batching_and_padding_do_not_change_vectors(minilm: MiniLMEmbedder) -> None:
    short = "A short sentence."
    long = "A considerably longer sentence, which forces the short one to be padded. " * 8

    alone, _ = await minilm.embed([short])
    batched, tokens = await minilm.embed([long, short, long])

    _assert_unit_rows(batched, 3, minilm.dim)
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)
    np.testing.assert_allclose(batched[0], batched[2], atol=1e-6)
    assert tokens == 2 * minilm.count_tokens(long) + minilm.count_tokens(short)


@pytest.mark.asyncio
async def test_minilm_token_arrays_embed_like_the_text(minilm: MiniLMEmbedder) -> None:
    from tokenizers import Tokenizer

    path = resolve_weights(BUILTIN_WEIGHTS["all-minilm-l6-v2-tokenizer"])
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # tokenizer.json pads everything to 128 tokens by default
    text = "Token arrays are WordPiece ids."
    with_specials = tokenizer.encode(text).ids
    content = tokenizer.encode(text, add_special_tokens=False).ids

    from_text, text_tokens = await minilm.embed([text])
    from_ids, id_tokens = await minilm.embed([content, with_specials])

    np.testing.assert_allclose(from_ids[0], from_text[0], atol=1e-6)
    np.testing.assert_allclose(from_ids[1], from_text[0], atol=1e-6)
    assert id_tokens == 2 * text_tokens


@pytest.mark.asyncio
async def test_minilm_rejects_bad_ids_and_long_inputs(minilm: MiniLMEmbedder) -> None:
    with pytest.raises(EngineError) as bad_id:
        await minilm.embed([[101, 30522, 102]])
    with pytest.raises(EngineError) as too_long:
        await minilm.embed(["word " * 300])

    assert (bad_id.value.status, bad_id.value.param) == (400, "input")
    assert (too_long.value.status, too_long.value.code) == (400, "context_length_exceeded")
    assert minilm.max_tokens == 256


@pytest.mark.asyncio
async def test_empty_batches_give_empty_arrays(minilm: MiniLMEmbedder) -> None:
    vectors, tokens = await minilm.embed([])

    assert vectors.shape == (0, minilm.dim) and tokens == 0


@pytest.mark.asyncio
async def test_minilm_refuses_a_tokenizer_that_is_not_the_pinned_one(tmp_path: Path) -> None:
    weights = resolve_weights(BUILTIN_WEIGHTS["all-minilm-l6-v2"])
    copied = tmp_path / "model.safetensors"
    shutil.copyfile(weights, copied)
    (tmp_path / "tokenizer.json").write_text('{"not": "the pinned tokenizer"}')
    embedder = MiniLMEmbedder(copied)

    with pytest.raises(EngineError) as failure:
        await embedder.embed(["hello"])

    assert (failure.value.status, failure.value.code) == (503, "model_unavailable")
    embedder.close()


async def test_e5_survives_text_that_expands_under_normalisation(e5: E5Embedder) -> None:
    # U+FDFA is one character of 3 bytes that NFKC turns into 18: the C normaliser's buffer
    # (4 code points per byte) overflowed and the whole process aborted.
    expanding = "\ufdfa" * 50
    vectors, tokens = await e5.embed([expanding])
    assert vectors.shape == (1, 384)
    assert tokens == e5.count_tokens(expanding) > 50
    same, _ = await e5.embed([unicodedata.normalize("NFKC", expanding)])
    assert np.allclose(vectors, same)
