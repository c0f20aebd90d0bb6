"""Draw the dashboard from real data: start the suite, drive traffic, scrape, evaluate, plot.

    .venv/bin/python -m tools.dashboard.render \
        [--seconds 60] [--out docs/dashboard.png]

The suite's processes run on loopback the way tests/conftest.py starts them, against the fake
OpenAI upstream (llmsuite_testkit.openai_upstream) scripted per model: `fake-slow` streams slowly,
`fake-broken` answers 500; generation routes them through a routing file with two weighted
deployments for the plain model and sample prices. Workers send a weighted mix (success, cached,
stream, RAG, guardrail block, upstream 500, bad key, model list) with the keys of two
organizations, faster in the middle third, under a two-stream limit per key that refuses some
streams with 429. Every `--interval` seconds
each service's /metrics is scraped; then every panel query of tools.dashboard.panels (the same
PromQL the Grafana JSON carries) is evaluated at each scrape time by tools.dashboard.promql and
drawn with matplotlib.
"""

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from llmsuite_common.local_auth import LocalAuthority
from llmsuite_common.service_keys import SIGNING_KEY_FILE
from llmsuite_common.service_tokens import SigningKey
from llmsuite_testkit.processes import ProcessGroup, fake_upstream, free_port, python_service
from matplotlib.figure import Figure

from tools.localsuite.suite import Ports, SuiteConfig, service_envs, service_keys

from . import traffic
from .names import exported, substitute
from .panels import PANELS, Panel
from .promql import Evaluator, Store

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("guardrails", "retrieval", "generation")
RATE_WINDOW = "15s"
WORKERS = 4


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


def suite_config(data_dir: Path) -> tuple[SuiteConfig, dict[str, str]]:
    ports = Ports.free()
    metrics = {name: free_port() for name in BACKENDS}
    models = {
        m: {"upstream_model": m, "stop": []}
        for m in (traffic.MODEL, traffic.SLOW_MODEL, traffic.BROKEN_MODEL)
    }
    extra = {name: {"METRICS_PORT": str(port)} for name, port in metrics.items()}
    extra["generation"]["GENERATION_ROUTING_FILE"] = str(routing_file(data_dir, ports.model))
    extra["guardrails"]["GUARDRAILS_DENY_TERMS"] = json.dumps([traffic.DENY_TERM])
    # Four workers sometimes hold three streams at once: the stream limit refuses the third.
    extra["gateway"] = {"GATEWAY_KEY_MAX_STREAMS": "2"}
    cfg = SuiteConfig(
        api_key="sk-dash-" + secrets.token_urlsafe(12),
        data_dir=data_dir,
        ports=ports,
        upstream_base_url=f"http://127.0.0.1:{ports.model}/v1",
        models=models,
        extra_env=extra,
    )
    endpoints = {"gateway": f"http://127.0.0.1:{ports.gateway}/metrics"}
    endpoints |= {name: f"http://127.0.0.1:{port}/metrics" for name, port in metrics.items()}
    return cfg, endpoints


def start(cfg: SuiteConfig, log_dir: Path) -> ProcessGroup:
    envs = service_envs(cfg)
    group = ProcessGroup()
    group.start(fake_upstream(cfg.ports.model, log_dir), timeout=30)
    group.start_many(
        [python_service(n, getattr(cfg.ports, n), envs[n], log_dir) for n in BACKENDS], timeout=240
    )
    group.start(python_service("gateway", cfg.ports.gateway, envs["gateway"], log_dir), timeout=60)
    upstream = f"http://127.0.0.1:{cfg.ports.model}"
    httpx.put(f"{upstream}/_script/model/{traffic.SLOW_MODEL}", json={"chunks": 12, "delay": 0.15}, timeout=5)
    httpx.put(f"{upstream}/_script/model/{traffic.BROKEN_MODEL}", json={"status": 500}, timeout=5)
    return group


def scrape(store: Store, endpoints: dict[str, str], t: float, names: dict[str, set[str]]) -> None:
    for job, url in endpoints.items():
        text = httpx.get(url, timeout=5).text
        store.add(t, text, {"job": job})
        names[job] |= exported(text)


def drive(cfg: SuiteConfig, endpoints: dict[str, str], seconds: float, interval: float):
    store, names = Store(), {job: set() for job in endpoints}
    gateway_url = f"http://127.0.0.1:{cfg.ports.gateway}"
    mix = traffic.Mix(gateway_url, cfg.api_key, tenant_keys=(traffic.tenant_key(gateway_url, cfg.api_key),))
    start_at = time.monotonic()
    deadline = start_at + seconds

    def pace(now: float) -> float:
        third = (now - start_at) / seconds * 3
        return 0.05 if 1 <= third < 2 else 0.6  # a burst in the middle third

    workers = [
        threading.Thread(target=mix.worker, args=(i, deadline, pace, 10_000), daemon=True)
        for i in range(WORKERS)
    ]
    scrape(store, endpoints, 0.0, names)
    for w in workers:
        w.start()
    for _ in range(int(seconds / interval) + 1):
        time.sleep(max(0.0, start_at + (_ + 1) * interval - time.monotonic()))
        scrape(store, endpoints, time.monotonic() - start_at, names)
        if time.monotonic() >= deadline:
            break
    for w in workers:
        w.join(timeout=60)
    scrape(store, endpoints, time.monotonic() - start_at, names)
    return store, names, mix.outcomes


def _legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for name, value in labels.items():
        out = out.replace("{{" + name + "}}", value)
    return out.replace("{{", "").replace("}}", "") or "value"


def series(
    evaluator: Evaluator, panel: Panel, times: list[float]
) -> dict[str, tuple[list[float], list[float]]]:
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for target in panel.targets:
        expr = substitute(target.expr, RATE_WINDOW)
        for t in times:
            value = evaluator.instant(expr, t)
            points = {(): value} if isinstance(value, float) else value
            for key, v in points.items():
                xs, ys = lines.setdefault(_legend(target.legend, dict(key)), ([], []))
                xs.append(t)
                ys.append(v)
    return lines


def plot(store: Store, times: list[float], out: Path, caption: str) -> None:
    evaluator = Evaluator(store)
    panels = [p for p in PANELS if p.rendered]
    cols = 3
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(18, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    scale = {
        "percentunit": (100, "%"),
        "s": (1000, "ms"),
        "reqps": (1, "req/s"),
        "ops": (1, "/s"),
        "currencyUSD": (1, "USD"),
    }
    for ax, panel in zip(axes.flat, panels, strict=False):
        factor, unit = scale.get(panel.unit, (1, ""))
        for label, (xs, ys) in sorted(series(evaluator, panel, times).items()):
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
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("llmsuite — dashboard queries evaluated on scraped /metrics", fontsize=14, x=0.01, ha="left")
    fig.text(0.01, 0.005, caption, fontsize=8, color="dimgrey")
    fig.tight_layout(rect=(0, 0.015, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic duration (bounded: 10..600)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 10.0), 600.0)
    with tempfile.TemporaryDirectory(prefix="llmsuite-dashboard-") as tmp:
        cfg, endpoints = suite_config(Path(tmp))
        log_dir = Path(tmp) / "logs"
        group = start(cfg, log_dir)
        try:
            authority = LocalAuthority(SigningKey.from_file(service_keys(cfg.data_dir) / SIGNING_KEY_FILE))
            traffic.ingest(cfg.ports.retrieval, authority.metadata("retrieval", "default"))
            store, names, outcomes = drive(cfg, endpoints, seconds, args.interval)
        finally:
            group.stop()
    times = sorted({t for samples in store.series.values() for t, _ in samples})
    sent = sum(outcomes.values())
    caption = (
        f"{sent} requests over {seconds:.0f} s, {len(times)} scrapes of {len(endpoints)} services every "
        f"{args.interval:g} s; rate window {RATE_WINDOW}. Mix: "
        + ", ".join(f"{k}×{v}" for k, v in sorted(outcomes.items()))
    )
    plot(store, times, args.out, caption)
    print(f"wrote {args.out}")
    print("requests:", json.dumps(dict(sorted(outcomes.items())), indent=1))
    for job, found in sorted(names.items()):
        print(
            f"{job}: {' '.join(sorted(n for n in found if n.startswith('llmsuite_') and not n.endswith('_created')))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
