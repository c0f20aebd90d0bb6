"""The bfloat16 model's linear layers on packed oneDNN weights (onednn_linear.py): every layer is
packed, the feed-forward GELU is fused, outputs stay the model's, and a failure leaves the model as
it was."""

from pathlib import Path

import pytest
import torch
from retrieval_service import onednn_linear
from retrieval_service.bf16 import Bf16Encoder
from retrieval_service.onnx_model import padded_tokenizer, tokenize
from sentence_transformers import SentenceTransformer

TEXTS = ["how many vacation days do new employees get", "Bicycles are parked behind the east gate. " * 8]


def _transformer(model_dir: Path) -> torch.nn.Module:
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    return model[0].auto_model.to(torch.bfloat16).eval()


def _native_bfloat16() -> bool:
    from retrieval_service import bf16

    return bf16.resolve("auto")


@pytest.mark.skipif(not _native_bfloat16(), reason="oneDNN's bfloat16 kernels need native support")
def test_every_linear_layer_is_packed_and_the_embeddings_stay(model_dir: Path):
    ids, mask = tokenize(padded_tokenizer(model_dir), TEXTS)
    plain = _transformer(model_dir)
    with torch.inference_mode():
        expected = plain(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).last_hidden_state
    encoder = Bf16Encoder(_transformer(model_dir))
    # all-MiniLM-L6-v2: 6 layers of query, key, value, attention output, feed-forward in and out,
    # and the pooler's.
    assert encoder.packed_layers == 37
    modules = list(encoder._transformer.modules())  # noqa: SLF001
    assert not any(isinstance(m, torch.nn.Linear) for m in modules)
    assert sum(isinstance(m, torch.nn.Identity) for m in modules) == 6  # each GELU, fused
    with torch.inference_mode():
        got = encoder._transformer(  # noqa: SLF001
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).last_hidden_state
    assert torch.allclose(got.float(), expected.float(), atol=0.1)
    rows = encoder.run(ids, mask)
    assert rows.shape == (2, 384)


def test_a_layer_oneDNN_cannot_run_leaves_the_model_unpacked(model_dir: Path, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setattr(onednn_linear, "_packed_linear", lambda linear, attr: Broken())
    transformer = _transformer(model_dir)
    probe = torch.ones(2, 16, dtype=torch.long)
    assert onednn_linear.pack_linears(transformer, {"input_ids": probe, "attention_mask": probe}) == 0
    modules = list(transformer.modules())
    assert sum(isinstance(m, torch.nn.Linear) for m in modules) == 37
    assert not any(isinstance(m, Broken | torch.nn.Identity) for m in modules)
    with torch.inference_mode():
        assert transformer(input_ids=probe, attention_mask=probe).last_hidden_state.shape == (2, 16, 384)


def test_padding_a_batch_for_attention_leaves_its_embeddings(model_dir: Path, monkeypatch):
    from retrieval_service import bf16

    ids, mask = tokenize(padded_tokenizer(model_dir), TEXTS)
    assert ids.shape[1] % bf16.SEQUENCE_MULTIPLE != 0  # so the padding is exercised
    encoder = Bf16Encoder(_transformer(model_dir))
    padded = encoder.run(ids, mask)
    monkeypatch.setattr(bf16, "SEQUENCE_MULTIPLE", 1)
    exact = encoder.run(ids, mask)
    assert float((padded * exact).sum(axis=1).min()) > 0.9999
