"""Large embedding batches in bfloat16, where the CPU multiplies bfloat16 natively.

A CPU with AVX512-BF16 or AMX (recent Xeons, Zen 4) runs the model's matrix products in
bfloat16 several times faster than in float32; torch reaches those units through autocast. On
the bench's documents (120 words) that was 2-4x the documents/s of ONNX Runtime in float32, at a
cosine of 0.9999 or more to the float32 embedding, so chunks stored either way stay comparable.
For a few short texts torch's fixed cost per call is larger than the gain, so only batches of at
least `min_tokens` padded tokens (ingest, not a lone query) go this way; the rest stay on the
float32 runtime. Without native support bfloat16 is emulated and slower, so `auto` is off there.
The torch model loaded for it costs about 350 MiB of memory beside ONNX Runtime's.
"""

from pathlib import Path

MODES = ("auto", "on", "off")
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
