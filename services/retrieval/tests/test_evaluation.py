import json
from pathlib import Path

import pytest
from retrieval_service import evaluation
from retrieval_service.client import RetrievalClient, Source
from retrieval_service.evaluation import documents_in_order, labelled, report, score

from tests.service_auth import AUTHORITY


def test_recall_and_mrr_by_hand():
    rankings = [["a", "b", "c"], ["x", "y", "a"], ["q"]]
    relevant = [{"a"}, {"a", "y"}, {"z"}]
    s = score(rankings, relevant, ks=(1, 3))
    assert s.recall[1] == pytest.approx((1 + 0 + 0) / 3)
    assert s.recall[3] == pytest.approx((1 + 1 + 0) / 3)
    assert s.mrr == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert documents_in_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


async def test_the_labelled_set_scores_well_through_the_client(retrieval_target: str):
    async with RetrievalClient(
        retrieval_target, credentials=AUTHORITY.credentials("eval-org"), timeout=120
    ) as client:
        vector = await labelled(client, "handbook")
        hybrid = await labelled(client, "handbook", hybrid_weight=0.3)
        # The second pass found the corpus stored already and wrote nothing.
        progress = [p async for p in client.ingest("handbook", [Source(id="leave", text="changed text")])]
        assert progress[0].status == progress[0].INDEXED
        listed = {c.name: c for c in await client.list_collections()}
    assert vector.queries == 32
    assert vector.recall[5] >= 0.9 and vector.mrr >= 0.8, vector
    assert hybrid.recall[5] >= 0.9, hybrid
    assert listed["handbook"].documents == 16
    text = report(
        {
            "dataset": "handbook.json",
            "vector": {
                "recall": {str(k): v for k, v in vector.recall.items()},
                "mrr": vector.mrr,
                "queries": 32,
            },
            "hybrid_0.3": {
                "recall": {str(k): v for k, v in hybrid.recall.items()},
                "mrr": hybrid.mrr,
                "queries": 32,
            },
        }
    )
    assert "| vector |" in text and "MRR" in text


REFERENCE = Path(evaluation.__file__).with_name("evaldata") / "handbook-reference.json"


@pytest.mark.parametrize("concurrency", [1, 32])
async def test_recall_at_10_and_mrr_match_the_reference_one_by_one_and_batched(
    retrieval_target: str, concurrency: int
):
    """The labelled set scores as recorded for the model (within 0.01), asked one question at a
    time and all 32 at once, when the micro-batcher embeds them together in few model calls."""
    reference = json.loads(REFERENCE.read_text())
    async with RetrievalClient(
        retrieval_target, credentials=AUTHORITY.credentials("eval-batched"), timeout=120
    ) as client:
        scores = await labelled(client, "handbook", concurrency=concurrency)
    assert scores.queries == 32
    for k in (1, 5, 10):
        assert scores.recall[k] == pytest.approx(reference["vector"][f"recall@{k}"], abs=0.01), scores
    assert scores.mrr == pytest.approx(reference["vector"]["mrr"], abs=0.01), scores
