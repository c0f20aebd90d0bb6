"""The embedding model on ONNX Runtime: the same weights, exported once from the model directory.

sentence-transformers on torch spends most of a short query's time in Python and framework
overhead; the exported graph (BERT, mean pooling over the attention mask, L2 normalization, in
one graph) runs the same arithmetic 2-3x faster on CPU for one query and ~2x for a batch. The
export needs torch, which is installed anyway for the fallback; it runs once, on first use,
into the model cache, and is written atomically so replicas starting together never see half a
file. Nothing is downloaded: the graph comes from the weights in the model directory.

An int8 version (dynamic quantization of the weights) is faster still but moves embeddings
further from torch's (cosine 0.95-1.0); it is used only when asked for (`onnx-int8`), after the
evaluation set shows its recall holds (tests/test_embedding_runtimes.py).
"""

import importlib.util
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "onnx-int8", "torch")
FP32_FILE = "model.onnx"
# Per-channel weights (the name changed with them, so an export cache from before is not reused).
INT8_FILE = "model.int8-per-channel.onnx"
OPSET = 17
DEFAULT_MAX_SEQ_LENGTH = 256


def onnx_runtime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_runtime(runtime: str) -> str:
    """`auto` is ONNX (fp32) where onnxruntime is installed, torch elsewhere."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown embedding runtime {runtime!r}; one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if onnx_runtime_installed() else "torch"
    return runtime


def max_seq_length(model_dir: Path) -> int:
    """The model's window in tokens, [CLS] and [SEP] included (sentence_bert_config.json)."""
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH)
    return DEFAULT_MAX_SEQ_LENGTH


def padded_tokenizer(model_dir: Path) -> "Tokenizer":
    """The model's tokenizer as a batch needs it: truncated to the model's window, padded to the
    batch's longest text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_seq_length(model_dir))
    tokenizer.enable_padding()
    return tokenizer


def tokenize(tokenizer: "Tokenizer", texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask of a batch, one padded row per text (int64, as models take)."""
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    return ids, mask


def exported_model(model_dir: Path, export_dir: Path, *, quantized: bool) -> Path:
    """The model's ONNX file under `export_dir`, exported (and quantized) first if it is not there."""
    export_dir.mkdir(parents=True, exist_ok=True)
    fp32 = export_dir / FP32_FILE
    if not fp32.is_file():
        _atomic(fp32, lambda tmp: _export(model_dir, tmp))
    if not quantized:
        return fp32
    int8 = export_dir / INT8_FILE
    if not int8.is_file():
        _atomic(int8, lambda tmp: _quantize(fp32, tmp))
    return int8


def _atomic(target: Path, write: Any) -> None:
    started = time.perf_counter()
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(name))
        os.replace(name, target)
    finally:
        Path(name).unlink(missing_ok=True)
    log.info(
        "embedding model exported to ONNX",
        extra={"path": str(target), "seconds": round(time.perf_counter() - started, 3)},
    )


def _export(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class SentenceEmbedding(torch.nn.Module):
        """BERT, mean pooling over real tokens, unit length: what the sentence-transformers
        pipeline of this model (Transformer, Pooling(mean), Normalize) computes."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in range(3))
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    axes["token_type_ids"] = {0: "batch", 1: "tokens"}
    # The tracer warns about shape checks it freezes (is the mask padded, is attention causal);
    # both are constant for this encoder, and outputs are checked against torch's in the tests.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceEmbedding(),
            example,
            str(out),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per output channel, unsigned: one scale per weight tensor moved embeddings to a cosine of 0.95
    # with the float model and flipped a top hit of the labelled set through the service; per
    # channel keeps them at 0.99 and the ranking with it. Signed per-channel weights with a reduced
    # range ran faster but flipped that hit too.
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QUInt8, per_channel=True)


class OnnxEncoder:
    """One ONNX Runtime session; `run` is called from one thread with batches tokenized by the
    caller (`padded_tokenizer`, `tokenize`)."""

    def __init__(self, model_path: Path, model_dir: Path, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Workers spin between the parallel steps of one run, and stop when it ends: the event loop
        # keeps its core between batches. Sleeping between steps made a lone query wake a worker
        # dozens of times, 1.3-1.5 ms more per query (and no less CPU); spinning on after the
        # run (the runtime's default) burned a core between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.max_seq_length = max_seq_length(model_dir)
        self.dimension = int(self._session.get_outputs()[0].shape[1])
        self.path = model_path

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Embeddings of texts already tokenized (`tokenize`)."""
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        out: np.ndarray = self._session.run(None, feeds)[0]
        return out.astype(np.float32, copy=False)
