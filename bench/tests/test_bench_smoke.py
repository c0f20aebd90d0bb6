"""The harness end to end in a few seconds: fake upstream, direct and the pass-through, real processes."""

import os
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_faithful_results(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": "libs/generated:libs/common:services/guardrails:services/retrieval:.",
        "BENCH_QUICK": "1",
        "BENCH_TARGETS": '["direct", "passthrough"]',
        "BENCH_SUITES": '["matrix"]',
        "BENCH_CONCURRENCY": "[1, 4]",
        "BENCH_CELL_SECONDS": "0.5",
        "BENCH_UPSTREAM_CHUNKS": "4",
        "BENCH_RESULTS_DIR": str(tmp_path / "results"),
        "BENCH_WORK_DIR": str(tmp_path / "work"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]

    res = orjson.loads((tmp_path / "results" / "latest.json").read_bytes())
    assert res["unavailable"] == {}
    cells = {(r["target"], r["stream"], r["concurrency"]): r for r in res["rows"]}
    assert set(cells) == {(t, s, c) for t in ("direct", "passthrough") for s in (False, True) for c in (1, 4)}
    for key, row in cells.items():
        assert row["requests"] > 0, key
        assert row["errors"] == 0, (key, row["error_kinds"])
        assert row["fidelity"] == 1.0, key
        assert row["p50_ms"] > 0, key
    stream = cells[("passthrough", True, 1)]
    assert stream["ttft_p50_ms"] is not None and stream["gap_p50_ms"] is not None
    assert stream["added_ttft_p50_ms"] is not None
    assert res["peak_rss"]["passthrough"]["passthrough"] > 0

    table = (tmp_path / "results" / "latest.md").read_text()
    assert "| passthrough | stream | 4 |" in table
    assert (tmp_path / "results" / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
