"""Where the gateway's CPU goes under load: py-spy samples it (and generation) during a streaming cell."""

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from .config import BenchSettings
from .matrix import cell_spec, run_loadgen
from .processes import PYTHON, Proc
from .targets import Target

TOP = 12


def _py_spy() -> str:
    return str(Path(PYTHON).parent / "py-spy")


def _record(proc: Proc, seconds: float, out: Path) -> subprocess.Popen:
    argv = [_py_spy(), "record", "--pid", str(proc.pid), "--duration", str(int(seconds)), "--rate", "250"]
    argv += ["--format", "raw", "--output", str(out), "--nonblocking", "--full-filenames"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_ROOTS = (
    "/site-packages/",
    "/lib/python3.11/",
    "/services/gateway/",
    "/services/generation/",
    "/services/guardrails/",
    "/libs/common/",
    "/libs/generated/",
    "/work/main/",
)


def short(frame: str) -> str:
    """`f (/…/site-packages/starlette/routing.py:683)` -> `f (starlette/routing.py:683)`."""
    func, _, where = frame.rpartition(" (")
    for root in _ROOTS:
        if root in where:
            return f"{func} ({where.split(root, 1)[1]}"
    return frame


def package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame's file belongs to; opentelemetry by its subpackage."""
    parts = short(frame).rpartition(" (")[2].split("/")
    if parts[0] == "opentelemetry" and len(parts) > 2:
        return "opentelemetry." + parts[1 if parts[1] != "instrumentation" else 2].removesuffix(".py")
    return parts[0].split(":")[0].removesuffix(".py")


def summarise(raw: Path) -> dict:
    """Self and inclusive sample shares per function, and self share per package, from collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [short(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
        by_package[package(frames[-1])] += n
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    # Entry points (runpy, main, the loop's run) are in every stack and say nothing.
    top = max(inclusive.values(), default=0)
    useful = [(f, n) for f, n in inclusive.most_common() if n < 0.9 * top]
    return {
        "samples": total,
        "packages": [(p, share(n)) for p, n in by_package.most_common(TOP)],
        "self": [(f, share(n)) for f, n in own.most_common(TOP)],
        "inclusive": [(f, share(n)) for f, n in useful[: TOP * 2]],
    }


def run(cfg: BenchSettings, target: Target) -> dict:
    out_dir = cfg.work_dir / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = [p for p in target.procs if p.name in ("gateway", "generation")]
    spec = cell_spec(
        cfg, target, True, cfg.profile_concurrency, duration_s=cfg.profile_seconds + 2, warmup_s=1.0
    )
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(run_loadgen(spec)))
    load.start()
    recorders = []
    # Sampling starts once warm-up is over and stops before the load does.
    time.sleep(1.5)
    for proc in procs:
        raw = out_dir / f"{proc.name}.txt"
        recorders.append((proc.name, raw, _record(proc, cfg.profile_seconds, raw)))
    summaries: dict[str, dict] = {}
    for name, raw, rec in recorders:
        _, err = rec.communicate(timeout=cfg.profile_seconds + 60)
        summaries[name] = summarise(raw) if raw.exists() else {"error": err.decode(errors="replace")[-300:]}
    load.join(cfg.profile_seconds + 120)
    lines = [
        f"py-spy, {cfg.profile_seconds:.0f} s at 250 Hz on each process while {cfg.profile_concurrency} clients "
        f"stream ({result.get('ok', 0)} answers, {result.get('errors', 0)} errors). Shares are of samples taken "
        "while the process was running Python or C code it called (time inside C extensions and the event loop "
        "counts to the Python frame that called them); *self* is time in the function itself, *inclusive* adds "
        "what it calls. "
        f"Raw stacks: `{out_dir}` (open with speedscope or flamegraph.pl).",
    ]
    for name, summary in summaries.items():
        if "error" in summary:
            lines += ["", f"{name}: py-spy failed: {summary['error']}"]
            continue
        lines += ["", f"**{name}** ({summary['samples']} samples), self time by package:", ""]
        lines += ["- " + ", ".join(f"{p} {100 * s:.1f}%" for p, s in summary["packages"])]
        lines += ["", f"**{name}**, top self time:", ""]
        lines += [f"- {100 * s:.1f}% `{f}`" for f, s in summary["self"]]
        lines += ["", f"**{name}**, top inclusive time:", ""]
        lines += [f"- {100 * s:.1f}% `{f}`" for f, s in summary["inclusive"]]
    return {"summaries": summaries, "lines": lines}
