"""Every embedding runtime (torch, ONNX, ONNX int8, large batches in bfloat16) embeds as torch does
where it matters: the labelled set ranks its documents with recall@k and MRR within 0.01 of torch's."""

import json
from pathlib import Path

import numpy as np
import pytest
from retrieval_service import bf16, evaluation, onnx_model
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
    # Every batch in bfloat16 (emulated, and slower, on a CPU without native support).
    loaded["bf16"] = Embedder(
        batch_size=16, torch_threads=2, runtime="onnx", onnx_root=onnx_root, bf16="on", bf16_min_tokens=0
    )
    await loaded["bf16"].load(model_dir)
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
    for runtime in ("onnx", "onnx-int8", "bf16"):
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


async def test_bfloat16_batches_stay_next_to_float32(runtimes):
    texts = [q["query"] for q in DATASET["queries"]] + list(DATASET["documents"].values())
    before = runtimes["bf16"].bf16_batches
    half = await runtimes["bf16"].embed(texts)
    assert runtimes["bf16"].bf16_batches > before
    assert half.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    assert float((half * await runtimes["torch"].embed(texts)).sum(axis=1).min()) > 0.9995


async def test_only_large_batches_run_in_bfloat16(model_dir, tmp_path):
    """A lone query stays on the float32 runtime (torch's cost per call would outweigh the gain);
    a batch of documents past the token threshold goes to bfloat16."""
    embedder = Embedder(
        batch_size=16, torch_threads=2, runtime="onnx", onnx_root=tmp_path, bf16="on", bf16_min_tokens=512
    )
    plain = Embedder(batch_size=16, torch_threads=2, runtime="onnx", onnx_root=tmp_path)
    await embedder.load(model_dir)
    await plain.load(model_dir)
    assert embedder.runtime == "onnx+torch-bf16" and plain.runtime == "onnx"
    query = "how many vacation days do new employees get"
    np.testing.assert_allclose((await embedder.embed([query]))[0], (await plain.embed([query]))[0], atol=1e-6)
    assert embedder.bf16_batches == 0
    documents = list(DATASET["documents"].values())[:16]
    assert len(documents) == 16
    await embedder.embed(documents)
    assert embedder.bf16_batches == 1
    await embedder.close()
    await plain.close()


def test_bfloat16_auto_follows_the_cpu(tmp_path):
    assert bf16.resolve("auto", frozenset({"avx2", "amx_bf16"}))
    assert bf16.resolve("auto", frozenset({"avx512f", "avx512_bf16"}))
    assert not bf16.resolve("auto", frozenset({"avx2", "avx512f"}))
    assert bf16.resolve("on", frozenset()) and not bf16.resolve("off", frozenset({"amx_bf16"}))
    with pytest.raises(ValueError, match="unknown bfloat16 mode"):
        bf16.resolve("fp8")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert "amx_bf16" in bf16.cpu_flags(cpuinfo)
    assert bf16.cpu_flags(tmp_path / "missing") == frozenset()


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
    # The suite's service runs on the defaults (`auto`): ONNX, since onnxruntime is installed, and
    # large batches in bfloat16 where this CPU has it natively.
    runtime = "onnx+torch-bf16" if bf16.resolve("auto") else "onnx"
    labels = {"runtime": runtime, "model": "all-MiniLM-L6-v2"}
    assert metrics_registry.get_sample_value("llmsuite_retrieval_embedding_runtime", labels) == 1
