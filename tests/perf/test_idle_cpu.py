"""With no traffic, every service stays nearly asleep: at most IDLE_MAX_CORE_SHARE of one core each.

Measured after the other perf tests have sent traffic through the chain (so pools, timers and
streams they left behind count). The retrieval service joins when it starts within
RETRIEVAL_START_SECONDS (it brings up an embedded PostgreSQL and loads its model); its share
counts its own process tree, not the PostgreSQL server it spawns.
"""

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.config import BenchSettings
from bench.processes import (
    Proc,
    StartupError,
    cpu_between,
    cpu_sample,
    free_port,
    grpc_ready,
    spawn,
    wait_until,
)
from bench.targets import Target, service_argv, service_env
from tests.perf.budget import IDLE_MAX_CORE_SHARE, IDLE_SECONDS, RETRIEVAL_START_SECONDS

SETTLE_SECONDS = 1.0


@pytest.fixture
def retrieval(perf_cfg: BenchSettings) -> Iterator[Proc | None]:
    # Not under pytest's basetemp: embedded PostgreSQL runs as its own user and must traverse the path.
    data_dir = Path(tempfile.mkdtemp(prefix="llmsuite-perf-"))
    data_dir.chmod(0o755)
    port = free_port()
    env = service_env("retrieval", port, {"RETRIEVAL_PGSERVER_DATA_DIR": str(data_dir / "pgserver")})
    proc = spawn("retrieval", service_argv("retrieval"), env, perf_cfg.work_dir / "logs")
    started = time.monotonic()
    try:
        wait_until(proc, grpc_ready(f"127.0.0.1:{port}"), RETRIEVAL_START_SECONDS)
    except StartupError as exc:
        print(f"\n[idle] retrieval left out: not serving after {time.monotonic() - started:.1f} s ({exc})")
        proc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        yield None
        return
    print(f"\n[idle] retrieval serving after {time.monotonic() - started:.1f} s")
    yield proc
    proc.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def test_idle_services_use_almost_no_cpu(chain: Target, retrieval: Proc | None) -> None:
    procs = [*chain.procs, *([retrieval] if retrieval is not None else [])]
    time.sleep(SETTLE_SECONDS)
    before = {p.name: cpu_sample([p]) for p in procs}
    started = time.monotonic()
    time.sleep(IDLE_SECONDS)
    elapsed = time.monotonic() - started
    shares = {p.name: cpu_between(before[p.name], cpu_sample([p])) / elapsed for p in procs}
    for name, share in shares.items():
        print(f"[idle] {name:<11} {100 * share:5.2f} % of a core over {elapsed:.1f} s")
    for p in procs:
        assert p.alive(), f"{p.name} exited: {p.log_tail()}"
    over = {name: share for name, share in shares.items() if share > IDLE_MAX_CORE_SHARE}
    assert not over, f"idle CPU above {100 * IDLE_MAX_CORE_SHARE:g} % of a core: {over}"
