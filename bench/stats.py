"""Pools raw cells across rounds into one row per shape, target, mode and concurrency."""

from collections import defaultdict

import numpy as np


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


SHAPE_ORDER = {"short": 0, "long": 1}
# The baselines every llmsuite ratio is taken against, and the key each ratio gets.
BASELINES = {
    "litellm": "vs_litellm",
    "passthrough": "vs_passthrough",
    "passthrough-fast": "vs_passthrough_fast",
    "direct": "vs_direct",
}


def _cpu_ms_per_request(group: list[dict]) -> float | None:
    """The target's CPU over its cells divided by every request it answered in them, warm-up included
    (older results without `handled` divide by the measured requests). None for a target that has no
    processes of its own (direct)."""
    handled = sum(c.get("handled", c["ok"]) for c in group)
    if not handled or any(c.get("target_cpu_s", 0.0) is None for c in group):
        return None
    return 1000 * sum(c.get("target_cpu_s", 0.0) for c in group) / handled


def summarise(cells: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        groups[(cell.get("shape", "short"), cell["target"], cell["stream"], cell["concurrency"])].append(cell)
    rows = []
    for (shape, target, stream, concurrency), group in groups.items():
        latency = [v for c in group for v in c["latency_ms"]]
        ttft = [v for c in group for v in c["ttft_ms"]]
        gaps = [v for c in group for v in c["gap_ms"]]
        ok = sum(c["ok"] for c in group)
        wall = sum(c["wall_s"] for c in group)
        rps_by_round = [c["ok"] / c["wall_s"] for c in group if c["wall_s"]]
        cpu_ms = _cpu_ms_per_request(group)
        chunks = group[0].get("chunks")
        rows.append(
            {
                "shape": shape,
                "chunks": chunks,
                "target": target,
                "stream": stream,
                "concurrency": concurrency,
                "requests": ok,
                "errors": sum(c["errors"] for c in group),
                "error_kinds": _merge([c["error_kinds"] for c in group]),
                "rps": ok / wall if wall else 0.0,
                "rps_min": min(rps_by_round, default=0.0),
                "rps_max": max(rps_by_round, default=0.0),
                "p50_ms": pct(latency, 50),
                "p90_ms": pct(latency, 90),
                "p99_ms": pct(latency, 99),
                "ttft_p50_ms": pct(ttft, 50),
                "ttft_p99_ms": pct(ttft, 99),
                "gap_p50_ms": pct(gaps, 50),
                "gap_p99_ms": pct(gaps, 99),
                "fidelity": sum(c["faithful"] for c in group) / ok if ok else None,
                "loadgen_cpu_share": sum(c["cpu_s"] for c in group) / wall if wall else None,
                "target_cpu_ms_per_request": cpu_ms,
                "target_cpu_ms_per_chunk": cpu_ms / chunks if cpu_ms is not None and chunks else None,
                "target_cpu_share": sum(c["target_cpu_s"] or 0.0 for c in group if "target_cpu_s" in c) / wall
                if wall and cpu_ms is not None
                else None,
            }
        )
    _add_vs_direct(rows)
    _add_vs_fast(rows)
    return sorted(
        rows, key=lambda r: (SHAPE_ORDER.get(r["shape"], 9), r["stream"], r["concurrency"], r["target"])
    )


def _merge(dicts: list[dict]) -> dict:
    out: dict[str, int] = defaultdict(int)
    for d in dicts:
        for key, value in d.items():
            out[key] += value
    return dict(out)


def _add_vs_direct(rows: list[dict]) -> None:
    direct = {(r["shape"], r["stream"], r["concurrency"]): r for r in rows if r["target"] == "direct"}
    for row in rows:
        base = direct.get((row["shape"], row["stream"], row["concurrency"]))
        if base is None:
            continue
        row["added_p50_ms"] = _minus(row["p50_ms"], base["p50_ms"])
        row["added_p99_ms"] = _minus(row["p99_ms"], base["p99_ms"])
        row["added_ttft_p50_ms"] = _minus(row["ttft_p50_ms"], base["ttft_p50_ms"])
        row["added_gap_p99_ms"] = _minus(row["gap_p99_ms"], base["gap_p99_ms"])
        row["rps_vs_direct"] = row["rps"] / base["rps"] if base["rps"] else None


def _add_vs_fast(rows: list[dict]) -> None:
    """CPU per request as a multiple of the fast pass-through's in the same cell: machines differ
    about 2x in speed per core, this multiple much less."""
    fast = {(r["shape"], r["stream"], r["concurrency"]): r for r in rows if r["target"] == "passthrough-fast"}
    for row in rows:
        base = fast.get((row["shape"], row["stream"], row["concurrency"]))
        ours, theirs = row["target_cpu_ms_per_request"], base and base["target_cpu_ms_per_request"]
        row["cpu_vs_fast"] = ours / theirs if ours is not None and theirs else None


def ratios(rows: list[dict], ours: str = "llmsuite") -> list[dict]:
    """Throughput ratios of `ours` against each baseline, for every shape, mode and concurrency."""
    index = {(r.get("shape", "short"), r["target"], r["stream"], r["concurrency"]): r for r in rows}
    out = []
    ordered = sorted(index.items(), key=lambda kv: (SHAPE_ORDER.get(kv[0][0], 9), kv[0][2], kv[0][3]))
    for (shape, target, stream, concurrency), row in ordered:
        if target != ours:
            continue
        entry = {"shape": shape, "stream": stream, "concurrency": concurrency}
        for other, key in BASELINES.items():
            base = index.get((shape, other, stream, concurrency))
            entry[key] = row["rps"] / base["rps"] if base and base["rps"] else None
        out.append(entry)
    return out
