"""The whole suite as real processes on loopback, shared by the cross-service tests."""

import functools
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from llmsuite_common.local_auth import LocalAuthority
from llmsuite_common.service_keys import SIGNING_KEY_FILE
from llmsuite_common.service_tokens import SigningKey
from llmsuite_testkit.processes import ProcessGroup, fake_upstream, free_port, python_service

from tests.otlp_receiver import OtlpReceiver
from tools.localsuite.suite import Ports, SuiteConfig, service_envs, service_keys

FAKE_MODEL = "fake-model"


@dataclass
class Suite:
    cfg: SuiteConfig
    group: ProcessGroup
    upstream_url: str
    log_dir: Path

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.ports.gateway}"

    @property
    def api_key(self) -> str:
        return self.cfg.api_key

    @functools.cached_property
    def authority(self) -> LocalAuthority:
        """Signs tokens with the suite's own key, as the suite's gateway does."""
        return LocalAuthority(SigningKey.from_file(service_keys(self.cfg.data_dir) / SIGNING_KEY_FILE))

    def grpc_auth(self, audience: str, org: str = "default", **caller: object) -> tuple[tuple[str, str], ...]:
        """Call metadata with a token for `org` (an admin unless `role`/`scopes` say otherwise)."""
        return self.authority.metadata(audience, org, **caller)

    def upstream_requests(self) -> list[dict]:
        return httpx.get(f"{self.upstream_url}/_requests", timeout=5).json()

    def clear_upstream_requests(self) -> None:
        httpx.delete(f"{self.upstream_url}/_requests", timeout=5)


@pytest.fixture(scope="session")
def otlp_receiver():
    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def suite(otlp_receiver):
    # Not under pytest's basetemp: embedded Postgres runs as its own user and needs to
    # traverse the path, and every pytest session resets that tree to mode 0700.
    data_dir = Path(tempfile.mkdtemp(prefix="llmsuite-suite-"))
    data_dir.chmod(0o755)
    log_dir = data_dir / "logs"
    ports = Ports.free()
    cfg = SuiteConfig(
        api_key="sk-test-" + secrets.token_urlsafe(12),
        data_dir=data_dir,
        ports=ports,
        upstream_base_url=f"http://127.0.0.1:{ports.model}/v1",
        models={FAKE_MODEL: {"upstream_model": FAKE_MODEL, "stop": []}},
        otlp_endpoint=otlp_receiver.endpoint,
        # Each gRPC backend's Prometheus listener (the gateway serves /metrics on its own port).
        extra_env={n: {"METRICS_PORT": str(free_port())} for n in ("guardrails", "retrieval", "generation")},
    )
    envs = service_envs(cfg)
    group = ProcessGroup()
    try:
        group.start(fake_upstream(ports.model, log_dir), timeout=30)
        group.start_many(
            [
                python_service(n, getattr(ports, n), envs[n], log_dir)
                for n in ("guardrails", "retrieval", "generation")
            ],
            timeout=240,
        )
        group.start(python_service("gateway", ports.gateway, envs["gateway"], log_dir), timeout=60)
    except BaseException:
        group.stop()
        _dump_logs(log_dir)
        raise
    yield Suite(cfg, group, f"http://127.0.0.1:{ports.model}", log_dir)
    group.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def _dump_logs(log_dir: Path) -> None:
    for path in sorted(log_dir.glob("*.log")):
        print(f"----- {path.name} (tail) -----", file=sys.stderr)
        print("\n".join(path.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)


@pytest.fixture
def unique_name() -> str:
    return "c" + secrets.token_hex(4)


__all__ = ["FAKE_MODEL", "Suite", "free_port"]
