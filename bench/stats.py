"""Pools raw cells across rounds into one row per target, mode and concurrency."""

from collections import defaultdict

import numpy as np


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarise(cells: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        groups[(cell["target"], cell["stream"], cell["concurrency"])].append(cell)
    rows = []
    for (target, stream, concurrency), group in groups.items():
        latency = [v for c in group for v in c["latency_ms"]]
        ttft = [v for c in group for v in c["ttft_ms"]]
        gaps = [v for c in group for v in c["gap_ms"]]
        ok = sum(c["ok"] for c in group)
        wall = sum(c["wall_s"] for c in group)
        rps_by_round = [c["ok"] / c["wall_s"] for c in group if c["wall_s"]]
        rows.append(
            {
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
                "target_cpu_ms_per_request": 1000 * sum(c.get("target_cpu_s", 0.0) for c in group) / ok if ok else None,
                "target_cpu_share": sum(c.get("target_cpu_s", 0.0) for c in group) / wall if wall else None,
            }
        )
    _add_vs_direct(rows)
    return sorted(rows, key=lambda r: (r["stream"], r["concurrency"], r["target"]))


def _merge(dicts: list[dict]) -> dict:
    out: dict[str, int] = defaultdict(int)
    for d in dicts:
        for key, value in d.items():
            out[key] += value
    return dict(out)


def _add_vs_direct(rows: list[dict]) -> None:
    direct = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "direct"}
    for row in rows:
        base = direct.get((row["stream"], row["concurrency"]))
        if base is None:
            continue
        row["added_p50_ms"] = _minus(row["p50_ms"], base["p50_ms"])
        row["added_p99_ms"] = _minus(row["p99_ms"], base["p99_ms"])
        row["added_ttft_p50_ms"] = _minus(row["ttft_p50_ms"], base["ttft_p50_ms"])
        row["added_gap_p99_ms"] = _minus(row["gap_p99_ms"], base["gap_p99_ms"])
        row["rps_vs_direct"] = row["rps"] / base["rps"] if base["rps"] else None


def ratios(rows: list[dict], ours: str = "llmsuite") -> list[dict]:
    """Throughput ratios of `ours` against each baseline, for every mode and concurrency."""
    index = {(r["target"], r["stream"], r["concurrency"]): r for r in rows}
    out = []
    for (target, stream, concurrency), row in sorted(index.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if target != ours:
            continue
        entry = {"stream": stream, "concurrency": concurrency}
        for other in ("litellm", "passthrough", "direct"):
            base = index.get((other, stream, concurrency))
            entry[f"vs_{other}"] = row["rps"] / base["rps"] if base and base["rps"] else None
        out.append(entry)
    return out
