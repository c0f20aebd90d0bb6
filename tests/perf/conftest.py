"""The real chain for the performance tests: the bench's fake upstream (short and long answers),
the llmsuite gateway, guardrails and generation processes, and the fast pass-through as the
machine's yardstick; all started with bench/targets.py, as `make bench` starts them."""

from collections.abc import Iterator

import pytest

from bench.config import BenchSettings
from bench.processes import Proc
from bench.targets import Target, check, start_fake_upstream, start_llmsuite, start_passthrough_fast
from tests.perf.budget import WARMUP_REQUESTS
from tests.perf.load import drive


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
