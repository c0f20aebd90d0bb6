"""A real Prometheus on loopback for the local suite: a generated config in a temporary directory,
the HTTP query API, and the series and metadata it scraped.

Each target carries the labels the chart's ServiceMonitors give a pod's series in a cluster
(`namespace`, `service`, `job`, `pod`), so the chart's PrometheusRule groups and the Grafana
queries run here unchanged. Debian's `prometheus` package (2.42, bookworm) provides the binary.
"""

import json
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from llmsuite_testkit.processes import Process, free_port, http_ok

from .names import family_series

# The release and namespace k8stools renders the chart with (k8s/tools/k8stools/paths.py): the
# chart's rules select `service="llmsuite-gateway"` in namespace "llmsuite".
RELEASE = "llmsuite"
NAMESPACE = "llmsuite"


def binary() -> str | None:
    return shutil.which("prometheus")


@dataclass(frozen=True)
class ScrapeTarget:
    """One service's /metrics, labelled as the chart's ServiceMonitor for it would label it."""

    name: str
    address: str  # host:port
    path: str = "/metrics"

    def labels(self) -> dict[str, str]:
        service = f"{RELEASE}-{self.name}"
        return {"namespace": NAMESPACE, "service": service, "pod": f"{service}-0", "container": self.name}


def config(targets: Iterable[ScrapeTarget], scrape_interval: float, rule_files: Iterable[Path] = ()) -> dict:
    interval = f"{max(1, round(scrape_interval * 1000))}ms"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                # kube-prometheus names a ServiceMonitor's job after the Service.
                "job_name": target.labels()["service"],
                "metrics_path": target.path,
                "static_configs": [{"targets": [target.address], "labels": target.labels()}],
            }
            for target in targets
        ],
    }


@dataclass
class Prometheus:
    """`with Prometheus(directory, targets) as prom:` starts it (ready on /-/ready), stops it after."""

    directory: Path
    targets: list[ScrapeTarget]
    scrape_interval: float = 1.0
    rule_files: list[Path] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: Process | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        exe = binary()
        if exe is None:
            raise FileNotFoundError(
                "no prometheus binary on PATH (Debian/Ubuntu: apt-get install prometheus)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        config_file = self.directory / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config_file.write_text(
            json.dumps(config(self.targets, self.scrape_interval, self.rule_files), indent=1)
        )
        argv = [
            exe,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        self.process = Process(
            "prometheus", argv, {}, lambda: http_ok(f"{self.url}/-/ready"), self.directory / "prometheus.log"
        )
        self.process.start()
        self.process.wait_ready(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)
            self.process = None

    def __enter__(self) -> "Prometheus":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        return list(self._get("/api/v1/query", **params)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Matrix result: [{"metric": {labels}, "values": [[t, "v"], ...]}, ...]."""
        return list(self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"])

    def series_names(self) -> set[str]:
        """Names of every series stored: scraped samples, `up` and the rules' own."""
        return set(self._get("/api/v1/label/__name__/values"))

    def declared_series(self) -> set[str]:
        """Series names of the metric families the targets declared (# HELP/# TYPE), samples or
        not: a labelled counter with no child yet has no series but is declared."""
        return {
            name
            for family, entries in self._get("/api/v1/metadata").items()
            for entry in entries
            for name in family_series(family, entry["type"])
        }

    def version(self) -> str:
        return str(self._get("/api/v1/status/buildinfo")["version"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/rules")["groups"])

    def target_health(self) -> dict[str, str]:
        """Scrape URL -> "up" | "down" | "unknown", with the last error when there is one."""
        active = self._get("/api/v1/targets", state="active")["activeTargets"]
        return {
            t["scrapeUrl"]: t["health"] + (f" ({t['lastError']})" if t["lastError"] else "") for t in active
        }

    def wait_scraped(self, since: float, timeout: float = 30.0) -> None:
        """Until every target has been scraped successfully after wall-clock time `since`."""
        deadline = time.monotonic() + timeout
        while True:
            active = self._get("/api/v1/targets", state="active")["activeTargets"]
            done = [t for t in active if t["health"] == "up" and _timestamp(t["lastScrape"]) > since]
            if active and len(done) == len(active):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"targets not all scraped since {since}: {self.target_health()}")
            time.sleep(0.2)


def _timestamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def finite_points(result: list[dict[str, Any]]) -> int:
    """Points with a number (not NaN, not ±Inf) across a query_range result."""
    return sum(1 for s in result for _, v in s["values"] if math.isfinite(float(v)))
