"""The harness end to end in a few seconds: fake upstream, direct and both pass-throughs, real processes,
short answers and (shrunk) long ones."""

import os
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_faithful_results(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BENCH_QUICK": "1",
        "BENCH_TARGETS": '["direct", "passthrough", "passthrough-fast"]',
        "BENCH_SUITES": '["matrix"]',
        "BENCH_CONCURRENCY": "[1, 4]",
        "BENCH_CELL_SECONDS": "0.5",
        "BENCH_UPSTREAM_CHUNKS": "4",
        "BENCH_LONG_CHUNKS": "12",
        "BENCH_LONG_GAP_MS": "2",
        "BENCH_LONG_CONCURRENCY": "[4]",
        "BENCH_RESULTS_DIR": str(tmp_path / "results"),
        "BENCH_WORK_DIR": str(tmp_path / "work"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    res = orjson.loads((tmp_path / "results" / "latest.json").read_bytes())
    assert res["unavailable"] == {}
    targets = ("direct", "passthrough", "passthrough-fast")
    cells = {(r["shape"], r["target"], r["stream"], r["concurrency"]): r for r in res["rows"]}
    assert set(cells) == {("short", t, s, c) for t in targets for s in (False, True) for c in (1, 4)} | {
        ("long", t, s, 4) for t in targets for s in (False, True)
    }
    for key, row in cells.items():
        assert row["requests"] > 0, key
        assert row["errors"] == 0, (key, row["error_kinds"])
        assert row["fidelity"] == 1.0, key
        assert row["p50_ms"] > 0, key
        assert row["chunks"] == (12 if key[0] == "long" else 4), key
    stream = cells[("short", "passthrough", True, 1)]
    assert stream["ttft_p50_ms"] is not None and stream["gap_p50_ms"] is not None
    assert stream["added_ttft_p50_ms"] is not None
    for shape in ("short", "long"):
        fast = cells[(shape, "passthrough-fast", True, 4)]
        assert fast["target_cpu_ms_per_request"] > 0
        assert fast["target_cpu_ms_per_chunk"] == fast["target_cpu_ms_per_request"] / fast["chunks"]
        assert fast["cpu_vs_fast"] == 1.0
        assert cells[(shape, "passthrough", True, 4)]["cpu_vs_fast"] > 0
    assert res["peak_rss"]["passthrough"]["passthrough"] > 0
    assert res["peak_rss"]["passthrough-fast"]["passthrough-fast"] > 0
    # No llmsuite in this run: every goal is listed, none measured.
    assert res["goals"] and all(g["met"] is None for g in res["goals"])

    table = (tmp_path / "results" / "latest.md").read_text()
    assert "| passthrough | stream | 4 |" in table
    assert "| passthrough-fast | non-stream | 4 |" in table
    assert "## Goals" in table and "## Every cell, long answers (12 chunks 2.0 ms apart)" in table
    assert (tmp_path / "results" / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
