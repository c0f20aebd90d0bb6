"""Draw the Grafana dashboard from a real Prometheus: the suite and a Prometheus scraping it on
loopback, a traffic mix, then every panel's queries asked of Prometheus' HTTP API.

    .venv/bin/python -m tools.dashboard.render \
        [--seconds 60] [--step 2] [--out docs/dashboard.png]

The suite's processes run on loopback the way tests/conftest.py starts them, against the fake
OpenAI upstream (llmsuite_testkit.openai_upstream) scripted per model: `fake-slow` streams slowly,
`fake-broken` answers 500; generation routes them through a routing file with two weighted
deployments for the plain model and sample prices, and opens a deployment's breaker after 3
failures (GENERATION_BREAKER_FAILURES) so the breaker panel has openings to count. Guardrails runs a
policy file with the deny term and a 1 µs budget for the input injection check, so the over-budget
line counts every input check. A Prometheus (tools.dashboard.prometheus: a temporary directory, a
generated config) scrapes each service every second with the labels the chart's ServiceMonitors give
(namespace "llmsuite", service "llmsuite-<name>").

Traffic (tools.dashboard.traffic): first every kind of request once (the prelude: the broken model
until its breaker opens, three streams at once on one key against a two-stream limit), then
workers send a weighted mix (success, cached, stream, RAG, guardrail block, upstream 500, bad key,
model list) with the keys of two organizations, faster in the middle third. Then each panel of the
chart's Grafana JSON (k8s/charts/llmsuite/dashboards/llmsuite.json, the one source of the queries)
is asked of /api/v1/query_range over the run, `$__rate_interval` set to a fixed window, and drawn
with matplotlib. A panel without data fails the run.
"""

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from llmsuite_common.local_auth import LocalAuthority
from llmsuite_common.service_keys import SIGNING_KEY_FILE
from llmsuite_common.service_tokens import SigningKey
from llmsuite_testkit.processes import ProcessGroup, fake_upstream, free_port, python_service
from matplotlib.figure import Figure

from tools.localsuite.suite import Ports, SuiteConfig, service_envs, service_keys

from . import traffic
from .grafana import DASHBOARD_JSON
from .names import substitute
from .prometheus import Prometheus, ScrapeTarget, binary, finite_points

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("guardrails", "retrieval", "generation")
SCRAPE_INTERVAL = 1.0
# `$__rate_interval` for the drawing: Grafana's is at least 4 scrape intervals; wider smooths a
# one-minute run without hiding its burst.
RATE_WINDOW = "15s"
WORKERS = 4
BREAKER_FAILURES = 3


@dataclass(frozen=True)
class GrafanaPanel:
    row: str
    title: str
    unit: str
    thresholds: tuple[float, ...]
    # (expr, legendFormat) per target, as Grafana sends them before substituting variables.
    targets: tuple[tuple[str, str], ...]


def grafana_panels(path: Path = DASHBOARD_JSON) -> list[GrafanaPanel]:
    """The dashboard's panels in order, each with the row it sits under."""
    panels, row = [], ""
    for panel in json.loads(path.read_text())["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            continue
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        steps = defaults.get("thresholds", {}).get("steps", [])
        panels.append(
            GrafanaPanel(
                row,
                panel["title"],
                defaults.get("unit", ""),
                tuple(float(s["value"]) for s in steps if s.get("value") is not None),
                tuple((t["expr"], t.get("legendFormat", "")) for t in panel["targets"]),
            )
        )
    return panels


def routing_file(data_dir: Path, upstream_port: int) -> Path:
    """Generation's routing table: two weighted deployments for the plain model, with sample
    prices (USD per million tokens) so the cost panel has something to add up."""
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    price = {"prompt": 2.5, "completion": 10.0}

    def deployment(name: str, upstream_model: str, weight: float = 1.0) -> dict:
        return {
            "name": name,
            "base_url": base_url,
            "upstream_model": upstream_model,
            "weight": weight,
            "price": price,
        }

    models = {
        traffic.MODEL: {
            "deployments": [deployment("fake-a", traffic.MODEL, 3), deployment("fake-b", traffic.MODEL)]
        },
        traffic.SLOW_MODEL: {"deployments": [deployment("fake-slow", traffic.SLOW_MODEL)]},
        traffic.BROKEN_MODEL: {"deployments": [deployment("fake-broken", traffic.BROKEN_MODEL)]},
    }
    path = data_dir / "routing.json"
    path.write_text(json.dumps({"models": models}))
    return path


def policy_dir(data_dir: Path) -> Path:
    """Guardrails' policy for every org: the deny term, and an input injection check expected to
    fit in 1 µs, which it never does (the over-budget counter moves with every input check)."""
    directory = data_dir / "policies"
    directory.mkdir(parents=True, exist_ok=True)
    policy = {
        "version": "dashboard",
        "input": {"deny": {"terms": [traffic.DENY_TERM]}, "injection": {"budget_ms": 0.001}},
    }
    (directory / "default.json").write_text(json.dumps(policy))
    return directory


def suite_config(data_dir: Path) -> tuple[SuiteConfig, list[ScrapeTarget]]:
    ports = Ports.free()
    metrics = {name: free_port() for name in BACKENDS}
    models: dict[str, dict[str, object]] = {
        m: {"upstream_model": m, "stop": []}
        for m in (traffic.MODEL, traffic.SLOW_MODEL, traffic.BROKEN_MODEL)
    }
    extra = {name: {"METRICS_PORT": str(port)} for name, port in metrics.items()}
    extra["generation"]["GENERATION_ROUTING_FILE"] = str(routing_file(data_dir, ports.model))
    extra["generation"]["GENERATION_BREAKER_FAILURES"] = str(BREAKER_FAILURES)
    extra["guardrails"]["GUARDRAILS_POLICY_DIR"] = str(policy_dir(data_dir))
    # Four workers sometimes hold three streams at once: the stream limit refuses the third. Every
    # request comes from 127.0.0.1, so the mix's bad keys (about 1 in 20) would trip the per-address
    # block on failed authentications (20 a window), and every request after them would get 429.
    extra["gateway"] = {"GATEWAY_KEY_MAX_STREAMS": "2", "GATEWAY_IP_AUTH_FAILURES": "200"}
    cfg = SuiteConfig(
        api_key="sk-dash-" + secrets.token_urlsafe(12),
        data_dir=data_dir,
        ports=ports,
        upstream_base_url=f"http://127.0.0.1:{ports.model}/v1",
        models=models,
        extra_env=extra,
    )
    targets = [ScrapeTarget("gateway", f"127.0.0.1:{ports.gateway}")]
    targets += [ScrapeTarget(name, f"127.0.0.1:{port}") for name, port in metrics.items()]
    return cfg, targets


def start(cfg: SuiteConfig, log_dir: Path) -> ProcessGroup:
    envs = service_envs(cfg)
    group = ProcessGroup()
    try:
        group.start(fake_upstream(cfg.ports.model, log_dir), timeout=30)
        group.start_many(
            [python_service(n, getattr(cfg.ports, n), envs[n], log_dir) for n in BACKENDS], timeout=240
        )
        group.start(python_service("gateway", cfg.ports.gateway, envs["gateway"], log_dir), timeout=60)
    except BaseException:
        group.stop()
        raise
    upstream = f"http://127.0.0.1:{cfg.ports.model}"
    httpx.put(f"{upstream}/_script/model/{traffic.SLOW_MODEL}", json={"chunks": 12, "delay": 0.15}, timeout=5)
    httpx.put(f"{upstream}/_script/model/{traffic.BROKEN_MODEL}", json={"status": 500}, timeout=5)
    return group


def burst_in_middle_third(seconds: float) -> Callable[[float, float], float]:
    """Pause after each request (per worker): short in the middle third of the run."""

    def pace(start_at: float, now: float) -> float:
        third = (now - start_at) / seconds * 3
        return 0.05 if 1 <= third < 2 else 0.6

    return pace


class Run:
    """The suite and a Prometheus scraping it, for one traffic run: `with Run(directory) as run:`.
    `rule_files` go to the Prometheus (tests give it the chart's rendered groups)."""

    def __init__(
        self, directory: Path, scrape_interval: float = SCRAPE_INTERVAL, rule_files: Iterable[Path] = ()
    ) -> None:
        self.directory = directory
        self.cfg, self.targets = suite_config(directory)
        self.group: ProcessGroup | None = None
        self.prometheus = Prometheus(
            directory / "prometheus", self.targets, scrape_interval, list(rule_files)
        )
        self.outcomes: Counter[str] = Counter()
        # Wall-clock bounds of the traffic, as Prometheus keeps time.
        self.started = 0.0
        self.ended = 0.0

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.ports.gateway}"

    def __enter__(self) -> "Run":
        try:
            self.group = start(self.cfg, self.directory / "logs")
            authority = LocalAuthority(
                SigningKey.from_file(service_keys(self.cfg.data_dir) / SIGNING_KEY_FILE)
            )
            traffic.ingest(self.cfg.ports.retrieval, authority.metadata("retrieval", "default"))
            self.prometheus.start()
            self.prometheus.wait_scraped(time.time())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.prometheus.stop()
        if self.group is not None:
            self.group.stop()
            self.group = None

    def drive(
        self, seconds: float, pace: Callable[[float, float], float] | None = None, workers: int = WORKERS
    ) -> Counter[str]:
        """The prelude, then `workers` threads of the mix for `seconds`; returns when Prometheus
        has scraped every service after the last request."""
        pace = pace or burst_in_middle_third(seconds)
        mix = traffic.Mix(
            self.gateway_url,
            self.cfg.api_key,
            tenant_keys=(traffic.tenant_key(self.gateway_url, self.cfg.api_key),),
            outcomes=self.outcomes,
        )
        self.started = time.time()
        mix.prelude(BREAKER_FAILURES)
        start_at = time.monotonic()
        deadline = start_at + seconds
        threads = [
            threading.Thread(
                target=mix.worker, args=(i, deadline, lambda now: pace(start_at, now), 10_000), daemon=True
            )
            for i in range(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 60)
        self.ended = time.time()
        self.prometheus.wait_scraped(self.ended)
        return self.outcomes

    def panel_series(
        self, panel: GrafanaPanel, step: float, rate_window: str = RATE_WINDOW
    ) -> dict[str, tuple[list[float], list[float]]]:
        """Legend -> (seconds since the run started, values) for every series of every target."""
        lines: dict[str, tuple[list[float], list[float]]] = {}
        for expr, legend in panel.targets:
            result = self.prometheus.query_range(
                substitute(expr, rate_window), self.started, self.ended, step
            )
            for series in result:
                xs, ys = lines.setdefault(_legend(legend, series["metric"]), ([], []))
                for t, v in series["values"]:
                    xs.append(float(t) - self.started)
                    ys.append(float(v))
        return lines

    def empty_panels(self, step: float, rate_window: str = RATE_WINDOW) -> list[str]:
        """Titles of the panels whose every query returned no number over the run."""
        empty = []
        for panel in grafana_panels():
            results = [
                self.prometheus.query_range(substitute(expr, rate_window), self.started, self.ended, step)
                for expr, _ in panel.targets
            ]
            if not any(finite_points(r) for r in results):
                empty.append(f"{panel.row} · {panel.title}")
        return empty


def _legend(template: str, labels: dict[str, Any]) -> str:
    out = template
    for name, value in labels.items():
        out = out.replace("{{" + name + "}}", str(value))
    return out.replace("{{", "").replace("}}", "") or "value"


SCALE = {
    "percentunit": (100, "%"),
    "s": (1000, "ms"),
    "reqps": (1, "req/s"),
    "ops": (1, "/s"),
    "currencyUSD": (1, "USD"),
}


def plot(
    drawn: list[tuple[GrafanaPanel, dict[str, tuple[list[float], list[float]]]]], out: Path, caption: str
) -> None:
    cols = 3
    rows = -(-len(drawn) // cols)
    fig = Figure(figsize=(18, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, drawn, strict=False):
        factor, unit = SCALE.get(panel.unit, (1, ""))
        for label, (xs, ys) in sorted(lines.items()):
            ax.plot(xs, [y * factor for y in ys], label=label[:48], linewidth=1.4)
        for threshold in panel.thresholds:
            ax.axhline(threshold * factor, color="red", linestyle="--", linewidth=0.8)
        ax.set_title(f"{panel.row} · {panel.title}", fontsize=10, loc="left")
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left", ncol=2)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    for ax in list(axes.flat)[len(drawn) :]:
        ax.axis("off")
    fig.suptitle(
        "llmsuite — the Grafana dashboard's queries, answered by Prometheus", fontsize=14, x=0.01, ha="left"
    )
    fig.text(0.01, 0.005, caption, fontsize=8, color="dimgrey")
    fig.tight_layout(rect=(0, 0.015, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic duration (bounded: 10..600)")
    parser.add_argument("--step", type=float, default=2.0, help="query_range step, seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 10.0), 600.0)
    if binary() is None:
        print("no prometheus binary on PATH: Debian/Ubuntu `apt-get install prometheus`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="llmsuite-dashboard-") as tmp, Run(Path(tmp)) as run:
        outcomes = run.drive(seconds)
        drawn = [(panel, run.panel_series(panel, args.step)) for panel in grafana_panels()]
        empty = run.empty_panels(args.step)
        names = run.prometheus.series_names()
        version = run.prometheus.version()
    sent = sum(outcomes.values())
    caption = (
        f"{sent} requests over {run.ended - run.started:.0f} s; Prometheus {version} scraping "
        f"{len(run.targets)} services every {SCRAPE_INTERVAL:g} s, query_range step {args.step:g} s, "
        f"$__rate_interval {RATE_WINDOW}. Mix: " + ", ".join(f"{k}×{v}" for k, v in sorted(outcomes.items()))
    )
    plot(drawn, args.out, caption)
    print(f"wrote {args.out}")
    print("requests:", json.dumps(dict(sorted(outcomes.items())), indent=1))
    print(
        "series:",
        " ".join(sorted(n for n in names if n.startswith("llmsuite_") and not n.endswith("_created"))),
    )
    if empty:
        print(f"panels without data: {empty}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
