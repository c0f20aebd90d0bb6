"""Embedding throughput with the retrieval service's own embedders.

Local: the Embedder one text per call vs batches, and batched vs the library's own
SentenceTransformer.encode. Remote: the RemoteEmbedder against a fake /v1/embeddings endpoint
with a fixed time per call, one text per call vs batches. Each runs in its own process (torch
is heavy and takes both cores); `run()` and `run_remote()` start them.
"""

import asyncio
import os
import random
import subprocess
import sys
import time

import orjson

from .config import BenchSettings
from .processes import PYTHON, ROOT, free_port, http_ready, spawn, wait_until

_WORDS = (
    "invoice shipment customer contract renewal policy region quarter revenue forecast support ticket latency "
    "database backup incident review onboarding manager budget approval vendor audit compliance report summary "
    "release feature roadmap training schedule warehouse inventory payment refund account security access"
).split()


def texts(count: int, seed: int = 7) -> list[str]:
    """Chunk-like texts of 20-120 words, the same every run."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 120))) + "." for _ in range(count)]


# Other work on a shared box only ever slows a run down: the best of several is the cleanest figure.
REPEATS = 7


async def _measure(count: int, batch_size: int) -> dict:
    """The service's Embedder against the library's own SentenceTransformer.encode on the same
    loaded model, thread and texts (best of REPEATS each, alternating), then one text per call."""
    from retrieval_service.embedder import Embedder, packaged_model_dir

    model_dir = packaged_model_dir(str(ROOT / ".data" / "models"))
    embedder = Embedder(batch_size=batch_size, torch_threads=os.cpu_count() or 1)
    await embedder.load(model_dir)
    corpus = texts(count)
    loop = asyncio.get_running_loop()

    def encode(batch: list[str]) -> object:
        return embedder.model.encode(
            batch,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    # The Embedder's own worker thread, so both run with the same torch thread settings.
    worker = embedder._executor  # noqa: SLF001
    await embedder.embed(corpus[:batch_size])
    await loop.run_in_executor(worker, encode, corpus[:batch_size])
    batched: list[float] = []
    library: list[float] = []
    # Process CPU time too: on a shared box other work stretches wall time, far less the CPU spent.
    batched_cpu: list[float] = []
    library_cpu: list[float] = []
    for repeat in range(REPEATS):
        # Alternating which goes first, so neither always runs right after the other.
        for which in (0, 1) if repeat % 2 == 0 else (1, 0):
            started, cpu_started = time.perf_counter(), time.process_time()
            if which == 0:
                await embedder.embed(corpus)
            else:
                await loop.run_in_executor(worker, encode, corpus)
            (batched if which == 0 else library).append(time.perf_counter() - started)
            (batched_cpu if which == 0 else library_cpu).append(time.process_time() - cpu_started)
    single_corpus = corpus[: max(count // 4, 8)]
    started = time.perf_counter()
    for text in single_corpus:
        await embedder.embed([text])
    single = time.perf_counter() - started
    await embedder.close()
    return {
        "texts": count,
        "batch_size": batch_size,
        "repeats": REPEATS,
        "batched_per_s": count / min(batched),
        "encode_per_s": count / min(library),
        "batched_s": batched,
        "encode_s": library,
        "batched_cpu_ms_per_text": 1000 * min(batched_cpu) / count,
        "encode_cpu_ms_per_text": 1000 * min(library_cpu) / count,
        "single_per_s": len(single_corpus) / single,
        "single_ms": single / len(single_corpus) * 1000,
    }


def run(cfg: BenchSettings) -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    argv = [
        str(PYTHON),
        "-m",
        "bench.embedding_bench",
        str(cfg.embedding_texts),
        str(cfg.embedding_batch_size),
    ]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=900, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return {"error": reason[0], "lines": [f"Not measured: {reason[0]}"]}
    r = orjson.loads(done.stdout)
    speedup = r["batched_per_s"] / r["single_per_s"]
    r["speedup"] = speedup
    r["embedder_vs_encode_pct"] = 100 * r["batched_per_s"] / r["encode_per_s"]
    r["embedder_vs_encode_cpu_pct"] = 100 * r["encode_cpu_ms_per_text"] / r["batched_cpu_ms_per_text"]
    r["lines"] = [
        f"retrieval_service.embedder.Embedder (all-MiniLM-L6-v2, CPU, torch on {os.cpu_count()} threads), "
        f"{r['texts']} texts of 20-120 words; batched figures are the best of {r['repeats']} alternating runs.",
        "",
        "| mode | texts/s |",
        "|---|---:|",
        f"| Embedder, one text per call | {r['single_per_s']:,.1f} ({r['single_ms']:.1f} ms each) |",
        f"| Embedder, batches of {r['batch_size']} | {r['batched_per_s']:,.1f} "
        f"({r['batched_cpu_ms_per_text']:.1f} ms CPU per text) |",
        f"| SentenceTransformer.encode, batch_size={r['batch_size']}, same model and thread | "
        f"{r['encode_per_s']:,.1f} ({r['encode_cpu_ms_per_text']:.1f} ms CPU per text) |",
        "",
        f"Batched ÷ one at a time: **{speedup:.1f}x**. Embedder ÷ the library's own encode: "
        f"**{r['embedder_vs_encode_pct']:.1f} %** in texts/s, {r['embedder_vs_encode_cpu_pct']:.1f} % by CPU per "
        "text (other work on a shared box stretches wall time far more than the CPU a run spends; seconds per "
        "run, Embedder: "
        + ", ".join(f"{x:.2f}" for x in r["batched_s"])
        + "; encode: "
        + ", ".join(f"{x:.2f}" for x in r["encode_s"])
        + ").",
    ]
    return r


async def _measure_remote(url: str, count: int, batch_size: int) -> dict:
    """The service's RemoteEmbedder against the fake endpoint: one text per call, then batches."""
    from retrieval_service.remote_embedder import RemoteEmbedder

    embedder = RemoteEmbedder(
        base_url=url, model="bench-embedding", api_key="", max_tokens=254, batch_size=batch_size
    )
    await embedder.load()
    corpus = texts(count)
    await embedder.embed(corpus[:batch_size])
    started = time.perf_counter()
    await embedder.embed(corpus)
    batched = time.perf_counter() - started
    single_corpus = corpus[: max(count // 4, 16)]
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


def run_remote(cfg: BenchSettings) -> dict:
    """Starts the fake /v1/embeddings endpoint and measures the retrieval service's RemoteEmbedder on it."""
    port = free_port()
    argv = [str(PYTHON), "-m", "bench.fake_embeddings", "--port", str(port)]
    argv += ["--delay-ms", str(cfg.embedding_remote_delay_ms)]
    server = spawn("fake-embeddings", argv, {}, cfg.work_dir / "logs")
    try:
        wait_until(server, http_ready(f"http://127.0.0.1:{port}/health"), cfg.startup_timeout_seconds)
        url = f"http://127.0.0.1:{port}/v1"
        argv = [str(PYTHON), "-m", "bench.embedding_bench", "remote", url]
        argv += [str(max(cfg.embedding_texts, 4 * cfg.embedding_batch_size)), str(cfg.embedding_batch_size)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=600, check=False)
    finally:
        server.stop()
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return {"error": reason[0], "lines": [f"Not measured: {reason[0]}"]}
    r = orjson.loads(done.stdout)
    r["delay_ms"] = cfg.embedding_remote_delay_ms
    r["speedup"] = r["batched_per_s"] / r["single_per_s"]
    r["lines"] = [
        "retrieval_service.remote_embedder.RemoteEmbedder against `fake_embeddings.py`, an OpenAI-compatible "
        f"/v1/embeddings endpoint that takes {r['delay_ms']:g} ms per call whatever the batch (384-d, base64); "
        f"{r['texts']} texts of 20-120 words.",
        "",
        "| mode | texts/s |",
        "|---|---:|",
        f"| one text per call | {r['single_per_s']:,.1f} ({r['single_ms']:.1f} ms each) |",
        f"| batches of {r['batch_size']} | {r['batched_per_s']:,.1f} |",
        "",
        f"Batched ÷ one at a time: **{r['speedup']:.1f}x**.",
    ]
    return r


def main() -> None:
    if sys.argv[1] == "remote":
        url, count, batch_size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        sys.stdout.buffer.write(orjson.dumps(asyncio.run(_measure_remote(url, count, batch_size))))
        return
    count, batch_size = int(sys.argv[1]), int(sys.argv[2])
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(_measure(count, batch_size))))


if __name__ == "__main__":
    main()
