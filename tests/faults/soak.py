"""A soak: the fault harness's mixed load for a long while (`make soak`, 30 minutes unless
SOAK_SECONDS says otherwise), sampling every service process as it goes.

Every few seconds, for each process of the suite (both gateways and both replicas of guardrails,
retrieval and generation): its resident memory (VmRSS in /proc/<pid>/status), its open file
descriptors (/proc/<pid>/fd) and the asyncio tasks of its serving loop
(`llmsuite_process_asyncio_tasks` on its /metrics). The first half is warm-up (caches fill,
pools open, the allocator settles); over the second half a least-squares line is fitted to each
series, and the soak fails when one grows past its bound:

- RSS: less than RSS_PERCENT_PER_10_MIN % of the process's mean RSS per 10 minutes;
- open file descriptors: the fitted line rises by at most FD_BOUND over the second half;
- asyncio tasks: the fitted line rises by at most TASK_BOUND over the second half.

It writes .run/soak/results.md (the table, the load's counts, the load average) and
.run/soak/samples.csv (every sample). Run: `python -m tests.faults.soak --seconds 300`.
"""

import argparse
import asyncio
import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.faults.harness import Harness, Replica, running_harness
from tests.faults.load import Balancer, Load, Report, report, under_load

OUT = Path(__file__).resolve().parents[2] / ".run" / "soak"
RSS_PERCENT_PER_10_MIN = 5.0
FD_BOUND = 8.0
TASK_BOUND = 10.0
INTERVAL_SECONDS = 5.0


@dataclass
class Sample:
    at: float  # seconds since the soak started
    process: str
    rss_kb: int
    fds: int
    tasks: int | None


@dataclass
class Verdict:
    process: str
    samples: int
    rss_mb: float  # mean over the second half
    rss_percent_per_10_min: float
    fds: float
    fd_growth: float
    tasks: float | None
    task_growth: float | None

    @property
    def ok(self) -> bool:
        return (
            self.rss_percent_per_10_min < RSS_PERCENT_PER_10_MIN
            and self.fd_growth <= FD_BOUND
            and (self.task_growth is None or self.task_growth <= TASK_BOUND)
        )


def processes(harness: Harness) -> list[Replica]:
    return [*harness.gateways, *(r for n in sorted(harness.replicas) for r in harness.replicas[n])]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _tasks(client: httpx.AsyncClient, replica: Replica) -> int | None:
    try:
        text = (await client.get(replica.metrics_url)).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("llmsuite_process_asyncio_tasks "):
            return int(float(line.split()[1]))
    return None


async def sample_all(client: httpx.AsyncClient, replicas: list[Replica], at: float) -> list[Sample]:
    out = []
    for r in replicas:
        pid = r.pid
        if pid is None:
            continue
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        out.append(Sample(at, r.name, _rss_kb(pid), fds, await _tasks(client, r)))
    return out


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def judge(samples: list[Sample]) -> list[Verdict]:
    """Each process's second half: fitted growth of RSS (per 10 min), fds and tasks (over it)."""
    end = max(s.at for s in samples)
    verdicts = []
    for name in dict.fromkeys(s.process for s in samples):
        late = [s for s in samples if s.process == name and s.at >= end / 2]
        span = max(s.at for s in late) - min(s.at for s in late)
        rss = sum(s.rss_kb for s in late) / len(late)
        tasks = [s for s in late if s.tasks is not None]
        verdicts.append(
            Verdict(
                name,
                len(late),
                rss / 1024,
                slope([(s.at, s.rss_kb) for s in late]) * 600 / rss * 100,
                sum(s.fds for s in late) / len(late),
                slope([(s.at, s.fds) for s in late]) * span,
                sum(s.tasks or 0 for s in tasks) / len(tasks) if tasks else None,
                slope([(s.at, s.tasks or 0) for s in tasks]) * span if tasks else None,
            )
        )
    return verdicts


def table(
    verdicts: list[Verdict], seconds: float, interval: float, load: Report, loadavg: tuple[float, float]
) -> str:
    lines = [
        f"Soak of {seconds / 60:.1f} min, sampled every {interval:g} s; the second half judged "
        f"(RSS < {RSS_PERCENT_PER_10_MIN:.0f} % per 10 min, fds +{FD_BOUND:.0f}, tasks +{TASK_BOUND:.0f} at most). "
        f"Load average {loadavg[0]:.2f} at the start, {loadavg[1]:.2f} at the end.",
        "",
        f"Load: {load.sent} requests ({load.sent / seconds:.1f}/s), {load.failed} failed, "
        f"{load.truncated} truncated streams, {load.rows_lost} request-log rows lost of {load.rows_owed}.",
        "",
        "| process | RSS (MB, mean) | RSS growth (% per 10 min) | open fds (mean) | fd growth | asyncio tasks (mean) | task growth | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for v in verdicts:
        tasks = "-" if v.tasks is None else f"{v.tasks:.1f}"
        growth = "-" if v.task_growth is None else f"{v.task_growth:+.1f}"
        lines.append(
            f"| {v.process} | {v.rss_mb:.0f} | {v.rss_percent_per_10_min:+.2f} | {v.fds:.1f} | "
            f"{v.fd_growth:+.1f} | {tasks} | {growth} | {'flat' if v.ok else 'GROWS'} |"
        )
    return "\n".join(lines)


def write(samples: list[Sample], text: str, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    with (out / "samples.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seconds", "process", "rss_kb", "fds", "asyncio_tasks"])
        for s in samples:
            w.writerow([f"{s.at:.1f}", s.process, s.rss_kb, s.fds, "" if s.tasks is None else s.tasks])


async def soak(
    harness: Harness, seconds: float, interval: float = INTERVAL_SECONDS, out: Path = OUT
) -> tuple[list[Verdict], list[Sample], Report, str]:
    """The mixed load for `seconds`, sampled every `interval`; the verdicts, samples, the load's
    report and the table."""
    samples: list[Sample] = []
    replicas = processes(harness)
    loadavg_start = os.getloadavg()[0]

    async def sampling(balancer: Balancer, load: Load) -> None:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            while (at := time.monotonic() - started) < seconds:
                samples.extend(await sample_all(client, replicas, at))
                await asyncio.sleep(interval - (time.monotonic() - started - at))

    load, _ = await under_load(harness, harness.load_key, sampling, tail=0.5)
    result, _missing = await report(harness, "Soak", load.outcomes, recovery_seconds=None, rows_timeout=60)
    verdicts = judge(samples)
    text = table(verdicts, seconds, interval, result, (loadavg_start, os.getloadavg()[0]))
    write(samples, text, out)
    return verdicts, samples, result, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "1800")))
    parser.add_argument("--interval", type=float, default=INTERVAL_SECONDS)
    args = parser.parse_args()
    with running_harness() as harness:
        verdicts, _, result, text = asyncio.run(soak(harness, args.seconds, args.interval))
    print(text)
    return 0 if all(v.ok for v in verdicts) and result.failed == 0 and result.rows_lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
