from pathlib import Path

from bench.profile_gateway import package, summarise
from bench.stats import ratios, summarise as summarise_cells


def cell(target: str, latency: list[float], ok: int, wall: float = 1.0, **extra: object) -> dict:
    base = {
        "target": target,
        "stream": False,
        "concurrency": 1,
        "ok": ok,
        "errors": 0,
        "error_kinds": {},
        "faithful": ok,
        "wall_s": wall,
        "cpu_s": 0.1,
        "latency_ms": latency,
        "ttft_ms": [],
        "gap_ms": [],
        "target_cpu_s": 0.0,
    }
    return {**base, **extra}


def test_rounds_are_pooled_and_compared_with_direct() -> None:
    rows = summarise_cells(
        [
            cell("direct", [10.0, 10.0], ok=100),
            cell("direct", [10.0, 10.0], ok=100),
            cell("llmsuite", [12.0, 12.0], ok=50),
            cell("llmsuite", [12.0, 12.0], ok=30),
            cell("litellm", [40.0], ok=10, wall=2.0),
        ]
    )
    ours = next(r for r in rows if r["target"] == "llmsuite")
    assert ours["requests"] == 80
    assert ours["rps"] == 40.0
    assert ours["added_p50_ms"] == 2.0
    assert ours["fidelity"] == 1.0
    (ratio,) = ratios(rows)
    assert ratio["vs_direct"] == 0.4
    assert ratio["vs_litellm"] == 8.0
    assert ratio["vs_passthrough"] is None


def test_profile_summary_counts_self_time_per_package(tmp_path: Path) -> None:
    site = "/v/lib/python3.11/site-packages"
    raw = tmp_path / "raw.txt"
    raw.write_text(
        f"main (/w/services/gateway/gateway_service/__main__.py:9);call ({site}/starlette/routing.py:1) 3\n"
        f"main (/w/services/gateway/gateway_service/__main__.py:9);"
        f"inject ({site}/opentelemetry/propagators/composite.py:5) 1\n"
    )
    summary = summarise(raw)
    assert summary["samples"] == 4
    assert dict(summary["packages"]) == {"starlette": 0.75, "opentelemetry.propagators": 0.25}
    assert package(f"f ({site}/grpc/aio/_call.py:667)") == "grpc"
