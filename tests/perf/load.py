"""Sending a fixed number of requests through a target and reading what its processes spent."""

from dataclasses import dataclass

from bench.config import BenchSettings
from bench.matrix import cell_spec, run_loadgen
from bench.processes import cpu_between, cpu_sample
from bench.targets import Target


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
    clients = min(concurrency, requests)
    spec = cell_spec(
        cfg, target, stream, clients, shape, duration_s=120.0, warmup_s=0.0, max_requests=requests
    )
    before = cpu_sample(target.procs)
    result = run_loadgen(spec)
    return Batch(target.name, shape, stream, requests, result, cpu_between(before, cpu_sample(target.procs)))
