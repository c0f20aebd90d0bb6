from pathlib import Path

from bench.goals import evaluate
from bench.profile_gateway import package, summarise
from bench.stats import ratios
from bench.stats import summarise as summarise_cells


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


def test_shapes_are_pooled_apart_and_cpu_is_per_request_handled() -> None:
    rows = summarise_cells(
        [
            cell("direct", [10.0], ok=100),
            cell("passthrough-fast", [11.0], ok=100, handled=125, target_cpu_s=0.25),
            cell("llmsuite", [20.0], ok=40, handled=50, target_cpu_s=1.0),
            cell("direct", [4000.0], ok=64, shape="long", chunks=200),
            cell(
                "passthrough-fast", [4001.0], ok=64, handled=64, target_cpu_s=0.32, shape="long", chunks=200
            ),
            cell("llmsuite", [4100.0], ok=32, handled=64, target_cpu_s=3.2, shape="long", chunks=200),
            cell("litellm", [4500.0], ok=16, handled=64, target_cpu_s=6.4, shape="long", chunks=200),
        ]
    )
    by = {(r["shape"], r["target"]): r for r in rows}
    assert [r["shape"] for r in rows] == ["short"] * 3 + ["long"] * 4
    assert by[("short", "llmsuite")]["target_cpu_ms_per_request"] == 20.0
    assert by[("short", "llmsuite")]["cpu_vs_fast"] == 10.0
    assert by[("long", "llmsuite")]["target_cpu_ms_per_request"] == 50.0
    assert by[("long", "llmsuite")]["target_cpu_ms_per_chunk"] == 0.25
    assert by[("long", "llmsuite")]["cpu_vs_fast"] == 10.0
    assert by[("long", "llmsuite")]["added_p50_ms"] == 100.0
    short, long = ratios(rows)
    assert (short["shape"], short["vs_passthrough_fast"], short["vs_litellm"]) == ("short", 0.4, None)
    assert (long["shape"], long["vs_passthrough_fast"], long["vs_litellm"]) == ("long", 0.5, 2.0)


def test_goals_are_met_or_not_from_the_rows() -> None:
    rows = summarise_cells(
        [
            cell("direct", [10.0], ok=100, concurrency=64),
            cell("passthrough-fast", [11.0], ok=100, target_cpu_s=0.1, concurrency=64),
            cell("llmsuite", [20.0], ok=100, target_cpu_s=0.4, concurrency=64),
            cell("litellm", [40.0], ok=20, target_cpu_s=0.4, concurrency=64),
        ]
    )
    res = {
        "rows": rows,
        "ratios": ratios(rows),
        "embedding_remote": {"speedup": 12.0, "delay_ms": 20, "batch_size": 64},
    }
    by = {g["goal"]: g for g in evaluate(res)}
    cpu = by["CPU per request, non-streamed (all llmsuite processes)"]
    assert (cpu["value"], cpu["cell"], cpu["vs_fast"], cpu["met"]) == (
        4.0,
        "short, non-stream, c=64",
        4.0,
        True,
    )
    assert by["requests/s at c=64 ÷ LiteLLM, non-streamed"]["value"] == 5.0
    assert by["requests/s at c=64 ÷ LiteLLM, non-streamed"]["met"] is True
    assert by["remote embeddings: batched ÷ one text per call"]["met"] is True
    assert by["CPU per request, streamed (all llmsuite processes)"]["met"] is None


def test_token_bench_reports_the_credential_cost_of_a_call():
    from bench.config import BenchSettings
    from bench.token_bench import run

    result = run(BenchSettings())
    # Cached on both sides: far below a millisecond of the chain's budget per request.
    assert 0 < result["client_us"] < 100 and 0 < result["server_us"] < 100
    assert result["first_verify_us"] > result["server_us"]
    assert any("per chat request" in line for line in result["lines"])
