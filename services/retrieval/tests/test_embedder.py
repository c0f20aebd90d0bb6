import numpy as np
import pytest
from retrieval_service.embedder import Embedder


async def test_closer_meaning_scores_higher(embedder: Embedder):
    query, near, far = await embedder.embed(
        [
            "How do I bake bread at home?",
            "A simple recipe for homemade sourdough loaves.",
            "The stock market closed lower on Tuesday.",
        ]
    )
    assert float(query @ near) > float(query @ far) + 0.2


async def test_embeddings_are_unit_length_and_batches_match_single_calls(embedder: Embedder):
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(19)]  # spans three batches of 8
    batched = await embedder.embed(texts)
    assert batched.shape == (19, embedder.dimension) == (19, 384)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    one = await embedder.embed([texts[13]])
    np.testing.assert_allclose(one[0], batched[13], atol=1e-5)


async def test_token_count_uses_the_model_tokenizer_without_truncation(embedder: Embedder):
    assert embedder.count_tokens("pgvector") > 1  # WordPiece splits unknown words
    long_text = "word " * 1000
    await embedder.embed([long_text])  # encoding truncates on the model's own tokenizer
    assert embedder.count_tokens(long_text) == 1000
    assert embedder.max_tokens == 254


async def test_no_texts_no_work(embedder: Embedder):
    assert (await embedder.embed([])).shape == (0, 384)


async def test_a_passed_deadline_stops_before_the_next_batch(embedder: Embedder):
    import asyncio

    from llmsuite_common.errors import DeadlineExceeded

    with pytest.raises(DeadlineExceeded):
        await embedder.embed(["text"] * 20, deadline=asyncio.get_running_loop().time())
