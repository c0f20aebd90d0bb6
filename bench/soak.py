"""Soak: steady streaming load on the llmsuite chain, RSS of each process read every few seconds."""

import threading
import time

from .config import BenchSettings
from .matrix import cell_spec, run_loadgen
from .targets import Target

INTERVAL_S = 5.0


def run(cfg: BenchSettings, target: Target) -> dict:
    total = cfg.soak_warmup_seconds + cfg.soak_seconds
    spec = cell_spec(cfg, target, True, cfg.soak_concurrency, duration_s=total, warmup_s=0.0, collect=False)
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(run_loadgen(spec)))
    started = time.monotonic()
    load.start()
    samples: list[tuple[float, dict[str, int]]] = []
    # Bounded by count as well as by the load thread finishing.
    for _ in range(int(total / INTERVAL_S) + 20):
        if not load.is_alive():
            break
        samples.append((time.monotonic() - started, {p.name: p.rss_bytes() for p in target.procs}))
        load.join(INTERVAL_S)
    load.join(120)
    after = [(t, s) for t, s in samples if t >= cfg.soak_warmup_seconds]
    rows = []
    for proc in target.procs:
        if not after:
            break
        first, last = after[0][1][proc.name], after[-1][1][proc.name]
        peak = max(s[proc.name] for _, s in after)
        growth = (last - first) / first * 100 if first else None
        rows.append(
            {"process": proc.name, "after_warmup": first, "end": last, "max": peak, "growth_pct": growth}
        )
    mib = 2**20
    lines = [
        f"{cfg.soak_concurrency} streaming clients for {cfg.soak_warmup_seconds:.0f} s warm-up + "
        f"{cfg.soak_seconds:.0f} s; {result.get('ok', 0)} answers, {result.get('errors', 0)} errors"
        f"{' ' + str(result['error_kinds']) if result.get('error_kinds') else ''}. RSS read every {INTERVAL_S:.0f} s. "
        "`make bench-soak` runs the 10-minute version.",
        "",
        "| process | RSS after warm-up | RSS at end | max | growth |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r['process']} | {r['after_warmup'] / mib:.1f} MiB | {r['end'] / mib:.1f} MiB | "
            f"{r['max'] / mib:.1f} MiB | {r['growth_pct']:+.2f}% |"
            for r in rows
        ),
    ]
    return {"rows": rows, "samples": samples, "requests": result.get("ok", 0), "lines": lines}
