"""Large embedding batches in bfloat16, where the CPU multiplies bfloat16 natively.

A CPU with AVX512-BF16 or AMX (recent Xeons, Zen 4) runs the model's matrix products in
bfloat16 several times faster than in float32; torch reaches those units. On the bench's
documents (120 words) that was 2-4x the documents/s of ONNX Runtime in float32, at a cosine of
0.9995 or more to the float32 embedding, so chunks stored either way stay comparable. For a few
short texts torch's fixed cost per call is larger than the gain, so only batches of at least
`min_tokens` padded tokens (ingest, not a lone query) go this way; the rest stay on the float32
runtime. Without native support bfloat16 is emulated and slower, so `auto` is off there.
The torch model loaded for it costs about 300 MiB of memory beside ONNX Runtime's.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .onednn_linear import pack_linears

if TYPE_CHECKING:
    import torch

MODES = ("auto", "on", "off")
# torch's flash attention on CPU took 13.3 ms for 32 texts of 158 tokens, 6.4 ms for 160 (12 heads,
# bfloat16, 2 threads); lengths that are multiples of 16 ran 1.2-1.6 us per token, others up to 2.6.
SEQUENCE_MULTIPLE = 16
# The CPU flags (Linux /proc/cpuinfo) of native bfloat16 matrix arithmetic.
NATIVE_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def resolve(mode: str, flags: frozenset[str] | None = None) -> bool:
    """Whether large batches run in bfloat16: `on`, `off`, or `auto` (where the CPU has it natively)."""
    if mode not in MODES:
        raise ValueError(f"unknown bfloat16 mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "auto":
        return bool(NATIVE_FLAGS & (cpu_flags() if flags is None else flags))
    return mode == "on"


class Bf16Encoder:
    """The model's transformer with its weights cast to bfloat16 once; mean pooling and
    normalization in float32.

    Casting once rather than through autocast, which converts every weight again at each call,
    ran 1.2x the documents/s on an AMX Xeon (3-6 % on an AVX512-BF16 EPYC); pooling the bfloat16
    hidden states in float32 keeps the embedding within a cosine of 0.9995 of float32's.
    """

    def __init__(self, transformer: "torch.nn.Module") -> None:
        import torch

        self._transformer = transformer.to(torch.bfloat16).eval()
        probe = torch.ones(2, 16, dtype=torch.long)
        self.packed_layers = pack_linears(self._transformer, {"input_ids": probe, "attention_mask": probe})

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit-length float32 embeddings of a tokenized batch (onnx_model.tokenize)."""
        import torch

        # Padding the batch to a length torch's CPU flash attention splits evenly; the added
        # positions are masked out of attention and pooling alike.
        if extra := -ids.shape[1] % SEQUENCE_MULTIPLE:
            ids = np.pad(ids, ((0, 0), (0, extra)))
            mask = np.pad(mask, ((0, 0), (0, extra)))
        with torch.inference_mode():
            attention = torch.from_numpy(mask)
            hidden = self._transformer(
                input_ids=torch.from_numpy(ids), attention_mask=attention
            ).last_hidden_state.float()
            weights = attention.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            out: np.ndarray = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out
