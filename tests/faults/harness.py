"""The suite twice over, as real processes on loopback, and the faults the tests put it through.

Two replicas of each gRPC service (guardrails, retrieval, generation) and two gateways. Each
gateway reaches a backend through one multi-address target, `ipv4:127.0.0.1:P1,127.0.0.1:P2`,
which its channel spreads with round_robin (llmsuite_common.grpc_client). Behind them: the fake
OpenAI-compatible upstream, one embedded PostgreSQL (the gateway's keys and request log, and
retrieval's vectors) and one Redis, both started here so the tests can stop and restart them.

A replaced replica comes back on the port of the one it replaces: the targets are fixed addresses,
where a cluster would re-resolve DNS and find a new pod's address. The gateways stand behind the
load's own balancer (load.Balancer), which plays the Kubernetes Service: a gateway leaves it
shortly after its SIGTERM, as an endpoint does, and rejoins once its /readyz passes.
"""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pgserver
import psycopg
import pytest
from llmsuite_testkit.openai_upstream import FakeUpstream
from llmsuite_testkit.processes import Process, fake_upstream, free_port, python_service

from services.gateway.tests.redis_server import RedisServer, redis_server
from tools.localsuite.suite import SuiteConfig, service_envs

BACKENDS = ("guardrails", "retrieval", "generation")
REPLICAS = 2
MODEL = "fake-model"
# A stream of ~8 s: LONG_CHUNKS chunks LONG_DELAY apart, through connections that age out sooner.
LONG_MODEL = "long-model"
LONG_CHUNKS = 80
LONG_DELAY = 0.1
# The steady load's answers: a few chunks a little apart, so restarts find streams in flight.
CHUNKS = 6
CHUNK_DELAY = 0.04
COLLECTION = "handbook"
DOCUMENTS = {
    "leave": "Employees get 25 days of paid leave a year. Unused leave carries over until March.",
    "expenses": "Submit travel expenses within 30 days with receipts attached. Meals are capped at 40 euros.",
    "security": "Laptops must use full-disk encryption. Report a lost device to the security desk at once.",
}
# Short enough that a long stream sees several GOAWAYs; every connection in the harness ages out.
CONNECTION_AGE_SECONDS = 3.0
# Longer than the gateways' reconnect backoff (llmsuite_common.grpc_client, 1 s): a replacement
# replica is connected before the one draining sends its callers away.
DRAIN_SECONDS = 2.0
SHUTDOWN_GRACE_SECONDS = 20.0
# The probe key's limit, and the window every limit is counted over (GATEWAY_RATE_LIMIT_WINDOW_SECONDS).
PROBE_RPM = 20
WINDOW_SECONDS = 10
START_SECONDS = 120


@dataclass
class Replica:
    """One process of a service, restartable on its own port."""

    service: str
    index: int
    port: int
    env: dict[str, str]
    log_dir: Path
    process: Process | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Its /metrics: the gateway's own port, a gRPC service's METRICS_PORT listener."""
        port = self.env.get("METRICS_PORT") if self.service != "gateway" else None
        return f"http://127.0.0.1:{port or self.port}/metrics"

    @property
    def pid(self) -> int | None:
        popen = self.process.popen if self.process is not None else None
        return popen.pid if popen is not None and popen.poll() is None else None

    def start(self) -> None:
        self.process = python_service(self.service, self.port, self.env, self.log_dir / self.name)
        self.process.start()

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        assert self.process is not None
        self.process.wait_ready(timeout)

    def terminate(self) -> None:
        assert self.process is not None and self.process.popen is not None
        self.process.popen.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None and self.process.popen is not None
        return self.process.popen.wait(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)


class Postgres:
    """The embedded server (pgserver), held by the harness so a test can stop and restart it; the
    services get its DSN and never start or stop it themselves."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server = pgserver.get_server(data_dir, cleanup_mode="stop")
        self.dsn = str(self._server.get_uri())

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT): sessions are ended, as when the database's pod goes away."""
        pid = self.pid()
        assert pid is not None, "postgres is not running"
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            assert time.monotonic() < deadline, "postgres did not stop"
            time.sleep(0.05)

    def start(self) -> None:
        for attempt in range(3):
            try:
                self._server.ensure_postgres_running()
                return
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        if self.pid() is None:
            self.start()  # so pgserver's own stop finds it and cleans up
        self._server.cleanup()


@dataclass
class Harness:
    cfg: SuiteConfig
    data_dir: Path
    log_dir: Path
    postgres: Postgres
    redis: RedisServer
    upstream: Process
    fake: FakeUpstream
    replicas: dict[str, list[Replica]]
    gateways: list[Replica]
    # Set in setup(): a key stored in the database (cached by each gateway after its first use),
    # the load's key; and one with a tight limit (PROBE_RPM per WINDOW_SECONDS), the Redis test's probe.
    load_key: str = ""
    probe_key: str = ""

    @property
    def admin_key(self) -> str:
        return self.cfg.api_key

    def request_log_ids(self, request_ids: list[str]) -> set[str]:
        with psycopg.connect(self.postgres.dsn, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT request_id FROM gateway.usage_events WHERE request_id = ANY(%s)", (request_ids,)
            ).fetchall()
        return {r[0] for r in rows}

    def setup(self) -> None:
        """A collection to retrieve from, and the keys the tests use, made through the gateway."""
        admin = {"authorization": f"Bearer {self.admin_key}"}
        with httpx.Client(base_url=self.gateways[0].url, headers=admin, timeout=60, trust_env=False) as http:
            made = http.post("/v1/collections", json={"name": COLLECTION})
            assert made.status_code in (200, 201), made.text
            docs = [{"id": k, "text": v} for k, v in DOCUMENTS.items()]
            ingested = http.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": docs})
            assert ingested.status_code == 200, ingested.text
            self.load_key = _create_key(http, {"name": "load"})
            self.probe_key = _create_key(http, {"name": "probe", "settings": {"rpm": PROBE_RPM}})


def _create_key(http: httpx.Client, body: dict) -> str:
    created = http.post("/v1/admin/keys", json={"role": "member", **body})
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def _metrics_port(service: str) -> dict[str, str]:
    """A gRPC service's own /metrics listener (the gateway serves /metrics on its HTTP port)."""
    return {} if service == "gateway" else {"METRICS_PORT": str(free_port())}


def _targets(ports: list[int]) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)


@contextlib.contextmanager
def running_harness() -> Iterator[Harness]:
    # Not under pytest's basetemp: embedded Postgres runs as its own user and must traverse the
    # path, and its Unix socket path must stay short.
    data_dir = Path(tempfile.mkdtemp(prefix="llmsuite-faults-", dir="/tmp"))
    data_dir.chmod(0o755)
    log_dir = data_dir / "logs"
    ports = {name: [free_port() for _ in range(REPLICAS)] for name in (*BACKENDS, "gateway")}
    upstream_port = free_port()
    models = {m: {"upstream_model": m, "stop": []} for m in (MODEL, LONG_MODEL)}
    started: list[Replica] = []
    upstream: Process | None = None
    postgres: Postgres | None = None
    with redis_server() as redis:
        if not redis.private:
            pytest.skip("the fault tests stop and restart Redis: they need a redis-server binary")
        try:
            postgres = Postgres(data_dir / "pg")
            cfg = SuiteConfig(
                api_key="sk-faults-" + secrets.token_urlsafe(12),
                data_dir=data_dir,
                upstream_base_url=f"http://127.0.0.1:{upstream_port}/v1",
                models=models,
                log_level="INFO",
                drain_seconds=DRAIN_SECONDS,
            )
            envs = service_envs(cfg)
            common = {
                "SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
                "GRPC_MAX_CONNECTION_AGE_SECONDS": str(CONNECTION_AGE_SECONDS),
            }
            envs["retrieval"] |= {
                "RETRIEVAL_DATABASE_URL": postgres.dsn,
                "RETRIEVAL_TORCH_THREADS": "1",
            }
            envs["gateway"] |= {
                "GATEWAY_DATABASE_URL": postgres.dsn,
                "GATEWAY_PGSERVER_DATA_DIR": "",
                "GATEWAY_REDIS_URL": redis.url,
                "GATEWAY_DEFAULT_MODEL": MODEL,
                "GATEWAY_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_SECONDS),
                **{f"GATEWAY_{n.upper()}_TARGET": _targets(ports[n]) for n in BACKENDS},
            }
            replicas = {
                name: [
                    Replica(name, i, port, {**envs[name], **common, **_metrics_port(name)}, log_dir)
                    for i, port in enumerate(ports[name])
                ]
                for name in (*BACKENDS, "gateway")
            }
            upstream = fake_upstream(upstream_port, log_dir, "--models", f"{MODEL},{LONG_MODEL}")
            upstream.start()
            upstream.wait_ready(30)
            fake = FakeUpstream(f"http://127.0.0.1:{upstream_port}")
            fake.set_default({"chunks": CHUNKS, "delay": CHUNK_DELAY})
            fake.set_model_default(LONG_MODEL, {"chunks": LONG_CHUNKS, "delay": LONG_DELAY})
            backends = [r for n in BACKENDS for r in replicas[n]]
            for r in backends:
                r.start()
                started.append(r)
            for r in backends:
                r.wait_ready()
            for r in replicas["gateway"]:
                r.start()
                started.append(r)
            for r in replicas["gateway"]:
                r.wait_ready()
            harness = Harness(
                cfg,
                data_dir,
                log_dir,
                postgres,
                redis,
                upstream,
                fake,
                {n: replicas[n] for n in BACKENDS},
                replicas["gateway"],
            )
            harness.setup()
            yield harness
            fake.close()
        except BaseException:
            dump_logs(log_dir)
            raise
        finally:
            # SIGTERM to all at once: each drains on its own.
            for r in started:
                if r.process is not None and r.process.popen is not None and r.process.popen.poll() is None:
                    r.terminate()
            for r in reversed(started):
                r.stop()
            if upstream is not None:
                upstream.stop()
            if postgres is not None:
                postgres.close()
            # The processes' logs outlive the run, next to the reports.
            kept = Path(__file__).resolve().parents[2] / ".run" / "faults" / "logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(log_dir, kept, dirs_exist_ok=True)
            shutil.rmtree(data_dir, ignore_errors=True)


def dump_logs(log_dir: Path, lines: int = 30) -> None:
    for path in sorted(log_dir.rglob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        print(f"----- {path.relative_to(log_dir)} (tail) -----\n" + "\n".join(tail))
