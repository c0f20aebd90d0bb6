"""The interleaved matrix: every target, mode and concurrency, round after round."""

import logging
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import orjson

from .config import BenchSettings
from .loadgen import CellSpec
from .processes import PYTHON, ROOT
from .targets import Target, payload

log = logging.getLogger("bench")


def run_loadgen(spec: CellSpec) -> dict:
    """Runs one cell in a fresh load-generator process and returns its raw result."""
    limit = spec.warmup_s + spec.duration_s + spec.timeout_s + 30
    with tempfile.TemporaryDirectory(prefix="bench-cell-") as scratch:
        out = Path(scratch) / "result.json"
        done = subprocess.run(
            [str(PYTHON), "-m", "bench.loadgen", str(out)],
            input=orjson.dumps(asdict(spec)),
            capture_output=True,
            cwd=ROOT,
            timeout=limit,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed: {done.stderr.decode(errors='replace')[-2000:]}")
        return orjson.loads(out.read_bytes())


def cell_spec(cfg: BenchSettings, target: Target, stream: bool, concurrency: int, **overrides: object) -> CellSpec:
    shape = cfg.shape()
    fields = {
        "url": target.url,
        "payload": payload(cfg, stream),
        "headers": target.headers,
        "concurrency": concurrency,
        "duration_s": cfg.cell_seconds,
        "warmup_s": cfg.warmup_seconds,
        "expected_chunks": shape.chunks,
        "expected_text": shape.text(),
        **overrides,
    }
    return CellSpec(**fields)  # type: ignore[arg-type]


def measure(cfg: BenchSettings, target: Target, stream: bool, concurrency: int) -> dict:
    """One cell, plus the CPU the target's own processes spent during it."""
    cpu_before = sum(p.cpu_seconds() for p in target.procs)
    result = run_loadgen(cell_spec(cfg, target, stream, concurrency))
    result["target_cpu_s"] = sum(p.cpu_seconds() for p in target.procs) - cpu_before
    return result


def run_matrix(cfg: BenchSettings, targets: list[Target]) -> list[dict]:
    """Raw cell results; each round rotates the target order so slow drift spreads evenly."""
    cells: list[dict] = []
    total = cfg.rounds * len(cfg.streams) * len(cfg.concurrency) * len(targets)
    done = 0
    started = time.monotonic()
    for round_no in range(cfg.rounds):
        for stream in cfg.streams:
            for concurrency in cfg.concurrency:
                shift = (round_no + concurrency) % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    result = measure(cfg, target, stream, concurrency)
                    cells.append(
                        {"target": target.name, "stream": stream, "concurrency": concurrency, "round": round_no,
                         **result}
                    )
                    done += 1
                    rps = result["ok"] / result["wall_s"] if result["wall_s"] else 0.0
                    log.info(
                        "cell %d/%d %-12s %-10s c=%-3d %8.1f req/s errors=%d (%.0f s)",
                        done, total, target.name, "stream" if stream else "non-stream", concurrency, rps,
                        result["errors"], time.monotonic() - started,
                    )
    return cells
