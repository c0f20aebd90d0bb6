"""The real chain for the performance tests: the bench's fake upstream (short and long answers),
the llmsuite gateway, guardrails and generation processes, and the fast pass-through as the
machine's yardstick; all started with bench/targets.py, as `make bench` starts them."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bench.config import BenchSettings
from bench.matrix import cell_spec, run_loadgen
from bench.processes import Proc, cpu_between, cpu_sample
from bench.targets import Target, check, start_fake_upstream, start_llmsuite, start_passthrough_fast
from tests.perf.budget import WARMUP_REQUESTS


@dataclass
class Batch:
    """`requests` answers of one shape and mode through one target, and the CPU its processes spent."""

    target: str
    shape: str
    stream: bool
    requests: int
    result: dict
    cpu_s: float

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.result["handled"]

    def problems(self) -> list[str]:
        r = self.result
        out = []
        if r["errors"]:
            out.append(f"{r['errors']} errors {r['error_kinds']}")
        if r["ok"] != self.requests:
            out.append(f"{r['ok']} of {self.requests} answers")
        if r["faithful"] != r["ok"]:
            out.append(f"{r['ok'] - r['faithful']} answers differ from the upstream's chunks or text")
        return out


def drive(
    cfg: BenchSettings, target: Target, shape: str, stream: bool, requests: int, concurrency: int
) -> Batch:
    """Exactly `requests` requests, `concurrency` at a time, through the bench's load generator (its
    own process); the CPU time of the target's processes is read before and after (not wall time)."""
    spec = cell_spec(
        cfg, target, stream, min(concurrency, requests), shape, duration_s=120.0, warmup_s=0.0, max_requests=requests
    )
    before = cpu_sample(target.procs)
    result = run_loadgen(spec)
    return Batch(target.name, shape, stream, requests, result, cpu_between(before, cpu_sample(target.procs)))


@pytest.fixture(scope="session")
def perf_cfg(tmp_path_factory: pytest.TempPathFactory) -> BenchSettings:
    work = tmp_path_factory.mktemp("perf")
    return BenchSettings(
        quick=False, work_dir=work / "work", results_dir=work / "results", startup_timeout_seconds=90.0
    )


@pytest.fixture(scope="session")
def upstream(perf_cfg: BenchSettings) -> Iterator[str]:
    proc, url = start_fake_upstream(perf_cfg)
    yield url
    proc.stop()


def _warm(cfg: BenchSettings, target: Target) -> Target:
    check(cfg, target)
    for stream in (False, True):
        drive(cfg, target, "short", stream, WARMUP_REQUESTS, 16)
    return target


def _stop(procs: list[Proc]) -> None:
    for proc in reversed(procs):
        proc.stop()


def _started(cfg: BenchSettings, target: Target) -> Iterator[Target]:
    try:
        _warm(cfg, target)
    except BaseException:
        for proc in target.procs:
            print(f"----- {proc.name} (tail) -----\n{proc.log_tail(40)}")
        _stop(target.procs)
        raise
    yield target
    _stop(target.procs)


@pytest.fixture(scope="session")
def fast(perf_cfg: BenchSettings, upstream: str) -> Iterator[Target]:
    """The fast pass-through: the CPU yardstick of the machine at hand."""
    yield from _started(perf_cfg, start_passthrough_fast(perf_cfg, upstream))


@pytest.fixture(scope="session")
def chain(perf_cfg: BenchSettings, upstream: str) -> Iterator[Target]:
    """gateway -> guardrails, generation -> fake upstream, each with its production defaults."""
    yield from _started(perf_cfg, start_llmsuite(perf_cfg, upstream))
