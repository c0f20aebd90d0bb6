"""Embedding throughput with the retrieval service's own Embedder: one text per call vs batches.

Runs in its own process (torch is heavy and takes both cores); `run()` starts it.
"""

import asyncio
import os
import random
import subprocess
import sys
import time

import orjson

from .config import BenchSettings
from .processes import PYTHON, ROOT

_WORDS = (
    "invoice shipment customer contract renewal policy region quarter revenue forecast support ticket latency "
    "database backup incident review onboarding manager budget approval vendor audit compliance report summary "
    "release feature roadmap training schedule warehouse inventory payment refund account security access"
).split()


def texts(count: int, seed: int = 7) -> list[str]:
    """Chunk-like texts of 20-120 words, the same every run."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 120))) + "." for _ in range(count)]


async def _measure(count: int, batch_size: int) -> dict:
    from retrieval_service.embedder import Embedder, packaged_model_dir

    model_dir = packaged_model_dir(str(ROOT / ".data" / "models"))
    embedder = Embedder(batch_size=batch_size, torch_threads=os.cpu_count() or 1)
    await embedder.load(model_dir)
    corpus = texts(count)
    await embedder.embed(corpus[:batch_size])
    started = time.perf_counter()
    await embedder.embed(corpus)
    batched = time.perf_counter() - started
    single_corpus = corpus[: max(count // 4, 8)]
    started = time.perf_counter()
    for text in single_corpus:
        await embedder.embed([text])
    single = time.perf_counter() - started
    await embedder.close()
    return {
        "texts": count,
        "batch_size": batch_size,
        "batched_per_s": count / batched,
        "single_per_s": len(single_corpus) / single,
        "single_ms": single / len(single_corpus) * 1000,
    }


def run(cfg: BenchSettings) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": "libs/generated:libs/common:services/retrieval:.",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    argv = [str(PYTHON), "-m", "bench.embedding_bench", str(cfg.embedding_texts), str(cfg.embedding_batch_size)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return {"error": reason[0], "lines": [f"Not measured: {reason[0]}"]}
    r = orjson.loads(done.stdout)
    speedup = r["batched_per_s"] / r["single_per_s"]
    r["speedup"] = speedup
    r["lines"] = [
        f"retrieval_service.embedder.Embedder (all-MiniLM-L6-v2, CPU, torch on {os.cpu_count()} threads), "
        f"{r['texts']} texts of 20-120 words.",
        "",
        "| mode | texts/s |",
        "|---|---:|",
        f"| one text per call | {r['single_per_s']:,.1f} ({r['single_ms']:.1f} ms each) |",
        f"| batches of {r['batch_size']} | {r['batched_per_s']:,.1f} |",
        "",
        f"Batched ÷ one at a time: **{speedup:.1f}x**.",
    ]
    return r


def main() -> None:
    count, batch_size = int(sys.argv[1]), int(sys.argv[2])
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(_measure(count, batch_size))))


if __name__ == "__main__":
    main()
