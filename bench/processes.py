"""Starting, watching and stopping the processes under test; all on 127.0.0.1."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmsuite_testkit.processes import free_port as free_port  # the bench's, re-exported

ROOT = Path(__file__).resolve().parent.parent
# The venv the bench runs in (make bench): the project's packages are installed there.
PYTHON = Path(sys.executable)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    samples: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident memory of the process and any workers it forked."""
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def peak_rss_bytes(self) -> int:
        """The kernel's high-water mark (VmHWM) summed over the process tree."""
        total = 0
        for proc in self.tree():
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU of the process tree, in the kernel's clock ticks (10 ms)."""
        total = 0.0
        for proc in self.tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        # Own process group (start_new_session), so workers a server forked stop with it.
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)


@dataclass(frozen=True)
class CpuSample:
    """CPU of some process trees at one moment: per thread in nanoseconds (/proc/<pid>/task/<tid>/schedstat)
    and, as a check, the clock-tick totals of psutil."""

    threads: dict[tuple[int, int], int]
    ticks_s: float


def _thread_ns(pid: int) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[(pid, int(tid))] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_sample(procs: list["Proc"]) -> CpuSample:
    threads: dict[tuple[int, int], int] = {}
    for proc in procs:
        for member in proc.tree():
            threads.update(_thread_ns(member.pid))
    return CpuSample(threads, sum(p.cpu_seconds() for p in procs))


def cpu_between(before: CpuSample, after: CpuSample) -> float:
    """CPU seconds spent between two samples.

    Clock ticks are too coarse for a few dozen cheap requests (a 10 ms tick against well under a
    millisecond each), so the per-thread nanosecond counters are summed. A thread that ended in
    between takes its time with it; when the tick totals say more than two ticks went missing that
    way, they are the answer instead.
    """
    precise = sum(ns - before.threads.get(key, 0) for key, ns in after.threads.items()) / 1e9
    coarse = after.ticks_s - before.ticks_s
    return precise if coarse - precise <= 0.02 else coarse


def spawn(name: str, argv: list[str], env: dict[str, str | None], log_dir: Path) -> Proc:
    """Starts `argv` with os.environ plus `env`; a None value removes that variable."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    # A restarted process gets a new file: the first one's log is evidence for the matrix.
    for n in range(2, 100):
        if not log_path.exists():
            break
        log_path = log_dir / f"{name}.{n}.log"
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name, popen, log_path)


class StartupError(RuntimeError):
    pass


def wait_until(proc: Proc, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartupError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason
            pass
        time.sleep(0.2)
    raise StartupError(f"{proc.name} not ready after {timeout:.0f} s:\n{proc.log_tail()}")


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200

    return check


def grpc_ready(address: str) -> Callable[[], bool]:
    def check() -> bool:
        with grpc.insecure_channel(address) as chan:
            reply = health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
            return reply.status == health_pb2.HealthCheckResponse.SERVING

    return check
