"""The interleaved matrix: every shape, target, mode and concurrency, round after round."""

import logging
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import orjson

from .config import BenchSettings
from .loadgen import CellSpec
from .processes import PYTHON, ROOT, cpu_between, cpu_sample
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


def cell_spec(
    cfg: BenchSettings,
    target: Target,
    stream: bool,
    concurrency: int,
    shape: str = "short",
    **overrides: object,
) -> CellSpec:
    answer = cfg.shape(shape)
    long = shape == "long"
    fields = {
        "url": target.url,
        "payload": payload(cfg, stream, shape),
        "headers": target.headers,
        "concurrency": concurrency,
        "duration_s": cfg.long_cell_seconds if long else cfg.cell_seconds,
        "warmup_s": cfg.long_warmup_seconds if long else cfg.warmup_seconds,
        "expected_chunks": answer.chunks,
        "expected_text": answer.text(),
        "expected_parts": answer.parts(),
        **({"timeout_s": cfg.long_timeout_seconds} if long else {}),
        **overrides,
    }
    return CellSpec(**fields)  # type: ignore[arg-type]


def measure(cfg: BenchSettings, target: Target, stream: bool, concurrency: int, shape: str = "short") -> dict:
    """One cell, plus the CPU the target's own processes spent during it (warm-up included: the
    result's `handled` counts the warm-up's requests too); None for a target without processes."""
    before = cpu_sample(target.procs)
    result = run_loadgen(cell_spec(cfg, target, stream, concurrency, shape))
    result["target_cpu_s"] = cpu_between(before, cpu_sample(target.procs)) if target.procs else None
    return result


def plan(cfg: BenchSettings) -> list[tuple[str, int, bool, int]]:
    """(shape, round, stream, concurrency) of every cell group, in the order they run."""
    out = []
    for shape in cfg.shapes:
        rounds, levels = (
            (cfg.long_rounds, cfg.long_concurrency) if shape == "long" else (cfg.rounds, cfg.concurrency)
        )
        for round_no in range(rounds):
            for stream in cfg.streams:
                for concurrency in levels:
                    out.append((shape, round_no, stream, concurrency))
    return out


def run_matrix(cfg: BenchSettings, targets: list[Target]) -> list[dict]:
    """Raw cell results; each round rotates the target order so slow drift spreads evenly."""
    cells: list[dict] = []
    groups = plan(cfg)
    total = len(groups) * len(targets)
    done = 0
    started = time.monotonic()
    for shape, round_no, stream, concurrency in groups:
        shift = (round_no + concurrency) % len(targets)
        for target in targets[shift:] + targets[:shift]:
            result = measure(cfg, target, stream, concurrency, shape)
            cells.append(
                {
                    "shape": shape,
                    "chunks": cfg.shape(shape).chunks,
                    "target": target.name,
                    "stream": stream,
                    "concurrency": concurrency,
                    "round": round_no,
                    **result,
                }
            )
            done += 1
            rps = result["ok"] / result["wall_s"] if result["wall_s"] else 0.0
            log.info(
                "cell %d/%d %-5s %-16s %-10s c=%-3d %8.1f req/s errors=%d (%.0f s)",
                done,
                total,
                shape,
                target.name,
                "stream" if stream else "non-stream",
                concurrency,
                rps,
                result["errors"],
                time.monotonic() - started,
            )
    return cells
