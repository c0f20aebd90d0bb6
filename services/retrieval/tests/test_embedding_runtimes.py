"""Every embedding runtime (torch, ONNX, ONNX int8) embeds as torch does where it matters: the
labelled set ranks its documents with recall@k and MRR within 0.01 of torch's."""

import json
from pathlib import Path

import numpy as np
import pytest
from retrieval_service import evaluation, onnx_model
from retrieval_service.embedder import Embedder
from retrieval_service.evaluation import score

DATASET = json.loads((Path(evaluation.__file__).with_name("evaldata") / "handbook.json").read_text())
RUNTIMES = ("torch", "onnx", "onnx-int8")


@pytest.fixture(scope="module")
async def runtimes(model_dir: Path, tmp_path_factory) -> dict[str, Embedder]:
    onnx_root = tmp_path_factory.mktemp("onnx")
    loaded = {}
    for runtime in RUNTIMES:
        loaded[runtime] = Embedder(batch_size=16, torch_threads=2, runtime=runtime, onnx_root=onnx_root)
        await loaded[runtime].load(model_dir)
    yield loaded
    for embedder in loaded.values():
        await embedder.close()


async def _ranking_scores(embedder: Embedder):
    ids = list(DATASET["documents"])
    docs = await embedder.embed([DATASET["documents"][i] for i in ids])
    queries = await embedder.embed([q["query"] for q in DATASET["queries"]])
    rankings = [[ids[j] for j in np.argsort(-(docs @ q))] for q in queries]
    return score(rankings, [set(q["relevant"]) for q in DATASET["queries"]], ks=(1, 5, 10))


async def test_each_runtime_ranks_the_labelled_set_as_torch_does(runtimes):
    reference = await _ranking_scores(runtimes["torch"])
    assert reference.recall[5] >= 0.9
    for runtime in ("onnx", "onnx-int8"):
        got = await _ranking_scores(runtimes[runtime])
        for k in (1, 5, 10):
            assert got.recall[k] == pytest.approx(reference.recall[k], abs=0.01), (runtime, got)
        assert got.mrr == pytest.approx(reference.mrr, abs=0.01), (runtime, got)


async def test_onnx_embeddings_are_torchs_and_int8_stays_close(runtimes):
    texts = [q["query"] for q in DATASET["queries"]] + list(DATASET["documents"].values())
    torch_rows = await runtimes["torch"].embed(texts)
    fp32 = await runtimes["onnx"].embed(texts)
    int8 = await runtimes["onnx-int8"].embed(texts)
    assert fp32.shape == int8.shape == torch_rows.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    assert float((fp32 * torch_rows).sum(axis=1).min()) > 0.9999
    assert float((int8 * torch_rows).sum(axis=1).min()) > 0.98
    for embedder in runtimes.values():
        assert embedder.max_tokens == 254 and embedder.dimension == 384
    # One text alone embeds as it does inside a padded batch.
    one = await runtimes["onnx"].embed([texts[3]])
    np.testing.assert_allclose(one[0], fp32[3], atol=1e-5)


async def test_auto_is_onnx_and_falls_back_to_torch_when_the_export_fails(model_dir, tmp_path, monkeypatch):
    assert onnx_model.resolve_runtime("auto") == "onnx"

    def broken(*args, **kwargs):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr("retrieval_service.embedder.exported_model", broken)
    auto = Embedder(batch_size=4, torch_threads=1, runtime="auto", onnx_root=tmp_path)
    await auto.load(model_dir)
    assert auto.runtime == "torch" and (await auto.embed(["hello"])).shape == (1, 384)
    await auto.close()
    asked = Embedder(batch_size=4, torch_threads=1, runtime="onnx", onnx_root=tmp_path)
    with pytest.raises(RuntimeError, match="no exporter"):
        await asked.load(model_dir)
    await asked.close()
    with pytest.raises(ValueError, match="unknown embedding runtime"):
        Embedder(batch_size=4, torch_threads=1, runtime="tensorflow")


async def test_metrics_name_the_runtime_that_embeds(retrieval_target, metrics_registry):
    # The suite's service runs on the default (`auto`): ONNX, since onnxruntime is installed.
    labels = {"runtime": "onnx", "model": "all-MiniLM-L6-v2"}
    assert metrics_registry.get_sample_value("llmsuite_retrieval_embedding_runtime", labels) == 1
